"""Mamba backbone: stacked selective state-space blocks over chunk latents (Gu & Dao, 2023).

One block of width d, inner width E = expand · d, state size N, Δ rank r, conv width K::

    [x ‖ z] = RMSNorm(u) W_in                                  (d → 2E, no bias)
    x       = SiLU(causal depthwise conv_K(x))                 (rolling buffer of the last K − 1 inputs)
    [δ ‖ B ‖ C] = x W_x                                        (E → r + 2N, no bias)
    Δ       = softplus(δ W_dt + b_dt)                          (r → E)
    h_t     = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t x_t) Bᵀ_t           (A = −exp(A_log) [E, N]; h [E, N])
    y_t     = h_t C_t + D ⊙ x_t
    v       = u + (y ⊙ SiLU(z)) W_out                          (E → d, no bias)

The stack is pre-norm (as in the Mamba reference): each block normalises its input, adds its output to the
residual stream, and a final RMSNorm (eps 1e-5) normalises the top. One recurrence step is one chunk.

Init: A_log = log(1..N) per channel (S4D-real), D = 1, ``W_dt`` ~ U(±r^−½), ``b_dt`` = softplus⁻¹(Δ₀) with
log Δ₀ ~ U(log 1e-3, log 1e-1) so that Δ starts in [1e-3, 1e-1] chunks; the conv weights and bias ~ U(±1/√K)
(torch's Conv1d default); other Linear layers use flax's default (LeCun-normal kernel, zero bias).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from possm_jax.types import Array


class MambaState(NamedTuple):
    """Streaming state of a Mamba stack, zeros at window or trial start.

    Attributes:
        conv: [L, b, K − 1, E] the last K − 1 conv inputs of every layer (oldest first).
        ssm: [L, b, E, N] the selective SSM state of every layer.
    """

    conv: Array
    ssm: Array


def causal_depthwise_conv(x: Array, buf: Array, w: Array, bias: Array) -> tuple[Array, Array]:
    """Causal depthwise convolution continuing from a buffer of past inputs.

    ``y_t = bias + Σ_k w[k] ⊙ x_{t − (K−1) + k}``, where inputs before the window come from ``buf``.

    Args:
        x: [b, c, E] inputs.
        buf: [b, K − 1, E] the K − 1 inputs before ``x`` (oldest first; zeros at stream start).
        w: [K, E] per-channel taps (torch Conv1d ``weight[:, 0, :]`` transposed).
        bias: [E].

    Returns:
        (y [b, c, E], new buffer [b, K − 1, E] = the last K − 1 inputs).
    """
    width, chunks = w.shape[0], x.shape[1]
    xx = jnp.concatenate([buf, x], axis=1)
    y = bias + sum(w[k] * xx[:, k : k + chunks] for k in range(width))
    return y, xx[:, xx.shape[1] - (width - 1) :]


def selective_inputs(
    x: Array, w_x: Array, w_dt: Array, b_dt: Array, dt_rank: int, state_size: int
) -> tuple[Array, Array, Array]:
    """Input-dependent step size and SSM matrices.

    Args:
        x: [..., E] conv outputs after SiLU.
        w_x: [E, r + 2N].
        w_dt: [r, E].
        b_dt: [E].
        dt_rank: r.
        state_size: N.

    Returns:
        (Δ [..., E] > 0, B [..., N], C [..., N]).
    """
    proj = x @ w_x
    delta = jax.nn.softplus(proj[..., :dt_rank] @ w_dt + b_dt)
    return delta, proj[..., dt_rank : dt_rank + state_size], proj[..., dt_rank + state_size :]


def selective_update(
    h: Array, x: Array, delta: Array, b: Array, c: Array, a: Array, d_skip: Array
) -> tuple[Array, Array]:
    """One step of the selective SSM (ZOH for A, Euler for B, as in Mamba).

    Args:
        h: [b, E, N] state.
        x: [b, E] input.
        delta: [b, E] step size.
        b: [b, N] input matrix.
        c: [b, N] output matrix.
        a: [E, N] negative-real diagonal A.
        d_skip: [E] skip weights D.

    Returns:
        (h' [b, E, N], y [b, E]).
    """
    h = jnp.exp(delta[..., None] * a) * h + (delta * x)[..., None] * b[:, None, :]
    return h, jnp.einsum("ben,bn->be", h, c) + d_skip * x


def selective_scan(
    x: Array, delta: Array, b: Array, c: Array, a: Array, d_skip: Array, h0: Array
) -> tuple[Array, Array]:
    """:func:`selective_update` scanned over chunks.

    Args:
        x: [b, c, E]; delta: [b, c, E]; b, c: [b, c, N]; a: [E, N]; d_skip: [E]; h0: [b, E, N].

    Returns:
        (y [b, c, E], h_last [b, E, N]).
    """

    def body(h: Array, inputs: tuple[Array, ...]) -> tuple[Array, Array]:
        x_t, delta_t, b_t, c_t = inputs
        return selective_update(h, x_t, delta_t, b_t, c_t, a, d_skip)

    time_major = tuple(jnp.swapaxes(v, 0, 1) for v in (x, delta, b, c))
    h_last, ys = jax.lax.scan(body, h0, time_major)
    return jnp.swapaxes(ys, 0, 1), h_last


class MambaBlock(nnx.Module):
    """One pre-norm Mamba block with residual; see the module docstring for the equations.

    Args:
        dim: d.
        state_size: N.
        expand: E = expand · d.
        conv_width: K.
        dt_rank: r.
        dropout: on the block output before the residual, active iff ``rngs`` is passed at call time.
        rngs: initialisation randomness.
    """

    def __init__(
        self, dim: int, state_size: int, expand: int, conv_width: int, dt_rank: int, dropout: float, *, rngs: nnx.Rngs
    ):
        inner = expand * dim
        self.state_size = state_size
        self.dt_rank = dt_rank
        self.norm = nnx.RMSNorm(dim, epsilon=1e-5, rngs=rngs)
        self.in_proj = nnx.Linear(dim, 2 * inner, use_bias=False, rngs=rngs)
        conv_bound = 1.0 / math.sqrt(conv_width)
        self.conv_w = nnx.Param(
            jax.random.uniform(rngs.params(), (conv_width, inner), jnp.float32, -conv_bound, conv_bound)
        )
        self.conv_b = nnx.Param(jax.random.uniform(rngs.params(), (inner,), jnp.float32, -conv_bound, conv_bound))
        self.x_proj = nnx.Linear(inner, dt_rank + 2 * state_size, use_bias=False, rngs=rngs)
        dt_bound = dt_rank**-0.5
        self.dt_w = nnx.Param(jax.random.uniform(rngs.params(), (dt_rank, inner), jnp.float32, -dt_bound, dt_bound))
        dt0 = jnp.exp(jax.random.uniform(rngs.params(), (inner,), jnp.float32, math.log(1e-3), math.log(1e-1)))
        dt0 = jnp.maximum(dt0, 1e-4)
        self.dt_b = nnx.Param(dt0 + jnp.log(-jnp.expm1(-dt0)))  # softplus⁻¹(Δ₀)
        self.a_log = nnx.Param(
            jnp.log(jnp.broadcast_to(jnp.arange(1, state_size + 1, dtype=jnp.float32), (inner, state_size)))
        )
        self.d_skip = nnx.Param(jnp.ones((inner,), jnp.float32))
        self.out_proj = nnx.Linear(inner, dim, use_bias=False, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)

    def _ssm_inputs(self, x: Array) -> tuple[Array, Array, Array, Array]:
        """x [..., E] (after conv and SiLU) -> (Δ [..., E], B [..., N], C [..., N], A [E, N])."""
        delta, b, c = selective_inputs(
            x, self.x_proj.kernel[...], self.dt_w[...], self.dt_b[...], self.dt_rank, self.state_size
        )
        return delta, b, c, -jnp.exp(self.a_log[...])

    def __call__(self, u: Array, conv_buf: Array, h0: Array, rngs: nnx.Rngs | None) -> tuple[Array, Array, Array]:
        """A window: u [b, c, d], conv_buf [b, K − 1, E], h0 [b, E, N] -> (v [b, c, d], conv_buf', h_last)."""
        x, z = jnp.split(self.in_proj(self.norm(u)), 2, axis=-1)
        x, conv_buf = causal_depthwise_conv(x, conv_buf, self.conv_w[...], self.conv_b[...])
        x = jax.nn.silu(x)
        delta, b, c, a = self._ssm_inputs(x)
        y, h = selective_scan(x, delta, b, c, a, self.d_skip[...], h0)
        out = self.out_proj(y * jax.nn.silu(z))
        return u + self.dropout(out, deterministic=rngs is None, rngs=rngs), conv_buf, h

    def step(self, u: Array, conv_buf: Array, h: Array) -> tuple[Array, Array, Array]:
        """One chunk: u [b, d], conv_buf [b, K − 1, E], h [b, E, N] -> (v [b, d], conv_buf', h')."""
        x, z = jnp.split(self.in_proj(self.norm(u)), 2, axis=-1)
        x, conv_buf = causal_depthwise_conv(x[:, None], conv_buf, self.conv_w[...], self.conv_b[...])
        x = jax.nn.silu(x[:, 0])
        delta, b, c, a = self._ssm_inputs(x)
        h, y = selective_update(h, x, delta, b, c, a, self.d_skip[...])
        return u + self.out_proj(y * jax.nn.silu(z)), conv_buf, h


class Mamba(nnx.Module):
    """Mamba backbone: Linear(in_dim → d), ``num_layers`` :class:`MambaBlock`, final RMSNorm; ``out_dim = d``.

    Args:
        in_dim: i, width of the chunk latents.
        dim: d, model width and ``out_dim``.
        num_layers: L.
        state_size: N (16 is the usual Mamba choice).
        expand: E = expand · d.
        conv_width: K, causal conv taps.
        dt_rank: r; ``None`` means ⌈d / 16⌉.
        dropout: block output dropout, active iff ``rngs`` is passed at call time.
        rngs: initialisation randomness.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_layers: int = 2,
        state_size: int = 16,
        expand: int = 2,
        conv_width: int = 4,
        dt_rank: int | None = None,
        dropout: float = 0.0,
        *,
        rngs: nnx.Rngs,
    ):
        dt_rank = math.ceil(dim / 16) if dt_rank is None else dt_rank
        sizes = dict(in_dim=in_dim, dim=dim, num_layers=num_layers, state_size=state_size, expand=expand)
        sizes.update(conv_width=conv_width, dt_rank=dt_rank)
        bad = {k: v for k, v in sizes.items() if v < 1}
        if bad:
            raise ValueError(f"Mamba sizes must be >= 1, got {bad}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Mamba dropout must be in [0, 1), got {dropout}.")
        self.num_layers = num_layers
        self.inner = expand * dim
        self.state_size = state_size
        self.conv_width = conv_width
        self.out_dim = dim
        self.in_proj = nnx.Linear(in_dim, dim, rngs=rngs)
        self.layers = nnx.List(
            [MambaBlock(dim, state_size, expand, conv_width, dt_rank, dropout, rngs=rngs) for _ in range(num_layers)]
        )
        self.norm = nnx.RMSNorm(dim, epsilon=1e-5, rngs=rngs)

    def init_state(self, batch: int) -> MambaState:
        """Zero state: conv [L, batch, K − 1, E], ssm [L, batch, E, N]."""
        return MambaState(
            conv=jnp.zeros((self.num_layers, batch, self.conv_width - 1, self.inner), jnp.float32),
            ssm=jnp.zeros((self.num_layers, batch, self.inner, self.state_size), jnp.float32),
        )

    def __call__(self, x: Array, state: MambaState, *, rngs: nnx.Rngs | None = None) -> tuple[Array, MambaState]:
        """Run a window.

        Args:
            x: [b, c, i] chunk latents.
            state: :class:`MambaState` before the first chunk.
            rngs: pass to enable dropout (training); ``None`` for evaluation.

        Returns:
            (y [b, c, d], new state).
        """
        u = self.in_proj(x)
        convs, ssms = [], []
        for k, layer in enumerate(self.layers):
            u, conv, h = layer(u, state.conv[k], state.ssm[k], rngs)
            convs.append(conv)
            ssms.append(h)
        return self.norm(u), MambaState(jnp.stack(convs), jnp.stack(ssms))

    def step(self, x: Array, state: MambaState) -> tuple[Array, MambaState]:
        """One chunk: x [b, i], state -> (y [b, d], new state); no dropout."""
        u = self.in_proj(x)
        convs, ssms = [], []
        for k, layer in enumerate(self.layers):
            u, conv, h = layer.step(u, state.conv[k], state.ssm[k])
            convs.append(conv)
            ssms.append(h)
        return self.norm(u), MambaState(jnp.stack(convs), jnp.stack(ssms))
