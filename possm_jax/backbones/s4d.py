"""S4D backbone: stacked diagonal complex state-space layers over chunk latents (Gu et al., 2022, "S4D").

One layer, per channel j of width d, with a complex diagonal state of n = N/2 modes::

    s_t = Ā ⊙ s_{t−1} + B̄ u_t                Ā = exp(Δ A),  B̄ = (exp(Δ A) − 1) / A   (ZOH, B = 1)
    y_t = 2 Re(Σ_n C ⊙ s_t) + D u_t
    v_t = LayerNorm(u_t + GLU(W · GELU(y_t) + b))      (post-norm; W: d → 2d)

* **Conjugate pairs.** A real SSM with state size N whose A, B, C are closed under complex conjugation has modes in
  pairs (λ, λ̄); each pair contributes ``C s + conj(C s) = 2 Re(C s)``. So N = 64 real state dimensions are stored as
  n = 32 complex modes and the output takes 2·Re — half the work, same function class.
* **S4D-Lin init.** A_k = −1/2 + iπk for k = 0..n−1. The real part is kept negative by storing log(−Re A).
  B is fixed to 1 (its role is absorbed by the learnable complex C ~ CN(0, 1)); D ~ N(0, 1).
* **Clock.** One recurrence step is one chunk, so Δ is in chunk units: log Δ ~ U(log 1e-3, log 1e-1) per channel
  means initial memory time-scales 1/(Δ·|Re A|) of 20 to 2000 chunks (1 s to 100 s at 50 ms chunks).
* **Linear layers** (input projection, GLU mixing) use flax's default init (LeCun-normal kernel, zero bias).
* **Norm placement.** Post-norm (residual, then LayerNorm eps 1e-5), as in the S4 reference example; the output
  of the stack is therefore normalised, which suits the decoder's attention context.

Streaming cost: Ā and B̄ depend only on the parameters, yet ``step`` recomputes them on every call (a few
transcendentals per mode). When the parameters are jit *arguments* this dominates a batch-1 step on CPU; for
deployment, close over the parameters (``jax.jit(lambda x, s: model.step(x, s))`` or ``jax.export`` with the weights
baked in) so XLA constant-folds the discretisation.

The recurrence runs either as ``jax.lax.scan`` (one chunk per step) or, for long sequences, as
``jax.lax.associative_scan`` over the linear recurrence (``mode="parallel"``); both give the same numbers.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from possm_jax.types import Array

MODES = ("scan", "parallel")


def s4d_discretize(log_dt: Array, log_neg_a_real: Array, a_imag: Array) -> tuple[Array, Array]:
    """Zero-order-hold discretisation of the diagonal continuous system with B = 1.

    Args:
        log_dt: [d] log step size Δ per channel, in chunk units.
        log_neg_a_real: [d, n] log(−Re A).
        a_imag: [d, n] Im A.

    Returns:
        (Ā [d, n], B̄ [d, n]) complex64: ``exp(Δ A)`` and ``(exp(Δ A) − 1) / A``.
    """
    # exp(Δ A) = exp(Δ Re A) · (cos(Δ Im A) + i sin(Δ Im A)): real transcendentals are several times cheaper
    # than a complex exp on CPU, and this runs on every streaming step.
    dt = jnp.exp(log_dt)[:, None]
    a_real = -jnp.exp(log_neg_a_real)
    decay, angle = jnp.exp(dt * a_real), dt * a_imag
    a_bar = jax.lax.complex(decay * jnp.cos(angle), decay * jnp.sin(angle))
    return a_bar, (a_bar - 1.0) / jax.lax.complex(a_real, a_imag)


class S4DKernel(NamedTuple):
    """One layer's discretised SSM: everything the recurrence needs, computed once per call from the parameters.

    Attributes:
        a_bar: [d, n] complex64 transition Ā.
        b_bar: [d, n] complex64 input gain B̄.
        c_re: [d, n] Re C.
        c_im: [d, n] Im C.
        d_skip: [d] skip weights D.
    """

    a_bar: Array
    b_bar: Array
    c_re: Array
    c_im: Array
    d_skip: Array


def s4d_readout(k: S4DKernel, s: Array, u: Array) -> Array:
    """``y = 2 Re(Σ_n C ⊙ s) + D u`` (the factor 2 adds each mode's complex-conjugate partner).

    Args:
        k: the layer's kernel.
        s: [..., d, n] complex states.
        u: [..., d] the SSM's input.

    Returns:
        [..., d] real outputs.
    """
    return 2.0 * jnp.sum(s.real * k.c_re - s.imag * k.c_im, axis=-1) + k.d_skip * u


def s4d_update(k: S4DKernel, s: Array, u: Array) -> tuple[Array, Array]:
    """One chunk: ``s' = Ā ⊙ s + B̄ u``, ``y = 2 Re(Σ_n C ⊙ s') + D u``.

    Args:
        k: the layer's kernel.
        s: [b, d, n] complex state.
        u: [b, d] input.

    Returns:
        (s' [b, d, n], y [b, d]).
    """
    s = k.a_bar * s + k.b_bar * u[..., None]
    return s, s4d_readout(k, s, u)


def s4d_scan(k: S4DKernel, u: Array, s0: Array) -> tuple[Array, Array]:
    """The SSM over a window, one chunk per ``jax.lax.scan`` step.

    The readout runs inside the loop, so the [b, c, d, n] states are never stacked (about 10x faster on CPU).

    Args:
        k: the layer's kernel.
        u: [b, c, d] inputs.
        s0: [b, d, n] complex state before the first chunk.

    Returns:
        (y [b, c, d], s_last [b, d, n]).
    """
    s_last, ys = jax.lax.scan(lambda s, u_t: s4d_update(k, s, u_t), s0, jnp.swapaxes(u, 0, 1))
    return jnp.swapaxes(ys, 0, 1), s_last


def s4d_parallel(k: S4DKernel, u: Array, s0: Array) -> tuple[Array, Array]:
    """Same as :func:`s4d_scan` in O(log c) depth with ``jax.lax.associative_scan`` over the linear recurrence.

    Pairs (a, x) compose as ``(a₁, x₁) ∘ (a₂, x₂) = (a₂ a₁, a₂ x₁ + x₂)``; folding s0 into the first input
    (``B̄ u_0 + Ā s0``) makes the scanned x-component equal the states. This materialises all [b, c, d, n] states,
    so it pays off only for long sequences on parallel hardware.

    Args:
        k: the layer's kernel.
        u: [b, c, d] inputs.
        s0: [b, d, n] complex initial state.

    Returns:
        (y [b, c, d], s_last [b, d, n]).
    """
    bu = (k.b_bar * u[..., None]).at[:, 0].add(k.a_bar * s0)
    # The transition is shared by the batch, so it stays [1, c, d, n] rather than being broadcast to bu's size.
    a = jnp.broadcast_to(k.a_bar, (1, u.shape[1], *k.a_bar.shape))

    def combine(left: tuple[Array, Array], right: tuple[Array, Array]) -> tuple[Array, Array]:
        a_l, x_l = left
        a_r, x_r = right
        return a_r * a_l, a_r * x_l + x_r

    _, states = jax.lax.associative_scan(combine, (a, bu), axis=1)
    return s4d_readout(k, states, u), states[:, -1]


class S4DLayer(nnx.Module):
    """One S4D layer of width d: SSM, GELU, GLU mixing, residual, LayerNorm.

    Args:
        dim: d, channels.
        state_size: N real state dimensions (even); stored as N/2 complex modes.
        dropout: on the mixed output before the residual, active iff ``rngs`` is passed at call time.
        rngs: initialisation randomness.
    """

    def __init__(self, dim: int, state_size: int, dropout: float, *, rngs: nnx.Rngs):
        modes = state_size // 2
        log_dt = jax.random.uniform(rngs.params(), (dim,), jnp.float32, math.log(1e-3), math.log(1e-1))
        self.log_dt = nnx.Param(log_dt)
        self.log_neg_a_real = nnx.Param(jnp.full((dim, modes), math.log(0.5), jnp.float32))
        self.a_imag = nnx.Param(jnp.broadcast_to(jnp.pi * jnp.arange(modes, dtype=jnp.float32), (dim, modes)))
        # C ~ CN(0, 1): real and imaginary parts each have variance 1/2.
        c = jax.random.normal(rngs.params(), (2, dim, modes), jnp.float32) * math.sqrt(0.5)
        self.c_re = nnx.Param(c[0])
        self.c_im = nnx.Param(c[1])
        self.d_skip = nnx.Param(jax.random.normal(rngs.params(), (dim,), jnp.float32))
        self.mix = nnx.Linear(dim, 2 * dim, rngs=rngs)
        self.norm = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)

    def kernel(self) -> S4DKernel:
        """The discretised SSM from the current parameters."""
        a_bar, b_bar = s4d_discretize(self.log_dt[...], self.log_neg_a_real[...], self.a_imag[...])
        return S4DKernel(a_bar, b_bar, self.c_re[...], self.c_im[...], self.d_skip[...])

    def ssm(self, u: Array, s0: Array, mode: str) -> tuple[Array, Array]:
        """The SSM alone over a window: u [b, c, d], s0 [b, d, n] -> (y [b, c, d], s_last [b, d, n])."""
        return (s4d_scan if mode == "scan" else s4d_parallel)(self.kernel(), u, s0)

    def output(self, u: Array, y: Array, rngs: nnx.Rngs | None) -> Array:
        """GELU, GLU mixing, dropout, residual, LayerNorm: u, y [..., d] -> [..., d]."""
        v = jax.nn.glu(self.mix(jax.nn.gelu(y, approximate=False)), axis=-1)
        return self.norm(u + self.dropout(v, deterministic=rngs is None, rngs=rngs))

    def __call__(self, u: Array, s0: Array, mode: str, rngs: nnx.Rngs | None) -> tuple[Array, Array]:
        """A window: u [b, c, d], s0 [b, d, n] -> (v [b, c, d], s_last [b, d, n])."""
        y, s_last = self.ssm(u, s0, mode)
        return self.output(u, y, rngs), s_last

    def step(self, u: Array, s: Array) -> tuple[Array, Array]:
        """One chunk: u [b, d], s [b, d, n] -> (v [b, d], s' [b, d, n])."""
        s, y = s4d_update(self.kernel(), s, u)
        return self.output(u, y, None), s


class S4D(nnx.Module):
    """S4D backbone: Linear(in_dim → d), then ``num_layers`` :class:`S4DLayer`; ``out_dim = d``.

    State: complex64 [L, b, d, N/2], zeros at window or trial start.

    Args:
        in_dim: i, width of the chunk latents.
        dim: d, model width and ``out_dim``.
        num_layers: L.
        state_size: N real state dimensions per channel (even; N/2 complex modes).
        dropout: per-layer output dropout, active iff ``rngs`` is passed at call time.
        mode: ``"scan"`` or ``"parallel"`` recurrence for windows (``step`` is always one update).
        rngs: initialisation randomness.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_layers: int = 4,
        state_size: int = 64,
        dropout: float = 0.0,
        mode: str = "scan",
        *,
        rngs: nnx.Rngs,
    ):
        if mode not in MODES:
            raise ValueError(f"S4D mode={mode!r} is unknown; use one of {MODES}.")
        if state_size < 2 or state_size % 2:
            raise ValueError(f"S4D state_size must be even and >= 2 (conjugate pairs), got {state_size}.")
        if in_dim < 1 or dim < 1 or num_layers < 1:
            raise ValueError(f"S4D needs in_dim, dim, num_layers >= 1, got {in_dim}, {dim}, {num_layers}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"S4D dropout must be in [0, 1), got {dropout}.")
        self.dim = dim
        self.modes = state_size // 2
        self.num_layers = num_layers
        self.mode = mode
        self.out_dim = dim
        self.in_proj = nnx.Linear(in_dim, dim, rngs=rngs)
        self.layers = nnx.List([S4DLayer(dim, state_size, dropout, rngs=rngs) for _ in range(num_layers)])

    def init_state(self, batch: int) -> Array:
        """Zero state, complex64 [L, batch, d, N/2]."""
        return jnp.zeros((self.num_layers, batch, self.dim, self.modes), jnp.complex64)

    def __call__(self, x: Array, state: Array, *, rngs: nnx.Rngs | None = None) -> tuple[Array, Array]:
        """Run a window.

        Args:
            x: [b, c, i] chunk latents.
            state: [L, b, d, N/2] complex state before the first chunk.
            rngs: pass to enable dropout (training); ``None`` for evaluation.

        Returns:
            (y [b, c, d], new state [L, b, d, N/2]).
        """
        u = self.in_proj(x)
        last = []
        for k, layer in enumerate(self.layers):
            u, s = layer(u, state[k], self.mode, rngs)
            last.append(s)
        return u, jnp.stack(last)

    def step(self, x: Array, state: Array) -> tuple[Array, Array]:
        """One chunk: x [b, i], state [L, b, d, N/2] -> (y [b, d], new state); no dropout."""
        u = self.in_proj(x)
        new = []
        for k, layer in enumerate(self.layers):
            u, s = layer.step(u, state[k])
            new.append(s)
        return u, jnp.stack(new)
