"""Noisy path-integrating RNNs: the unified second-order update (Casco-Rodriguez et al. 2026) and a GRU variant.

The unified update covers every condition of both papers as parameter settings:

    drive = ReLU(W h + U x - b_a a)
    delta = -lambda_h h + lambda_h drive              (leak; lambda_h = 1 is the non-leaky RNN)
    a'    = (1 - lambda_a) a + lambda_a h             (adaptation, negative feedback of strength b_a)
    v'    = (1 - lambda_v) v + delta + sigma xi       (momentum; lambda_v = 1 is first order)
    h'    = h + v'

With ``lambda_v = 1`` and ``b_a = 0`` this is Krishna et al.'s leaky RNN ``h' = (1-a) h + a ReLU(W h + U x) + sigma xi``
with ``a = lambda_h``. There are no biases. The readout is ``y = W_out h`` and the initial state ``h0 = W_enc f(s0)``.

Shapes: ``b`` batch, ``t`` time steps, ``i`` inputs, ``h`` hidden units, ``o`` output cells.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from possm_jax.types import Array

CELLS = ("rnn", "gru")
NOISE_KINDS = ("gaussian", "uniform")


@dataclasses.dataclass(frozen=True)
class CellConfig:
    """Static hyper-parameters of the recurrence.

    Attributes:
        kind: ``rnn`` (unified update) or ``gru``.
        leak: ``lambda_h`` (``alpha`` of Krishna et al.).
        adapt_rate: ``lambda_a``.
        adapt_strength: ``b_a``; 0 disables adaptation.
        momentum: ``lambda_v``; 1 is first order.
        noise_sd: ``sigma``, the per-step noise scale.
        noise_kind: ``gaussian`` (N(0, 1)) or ``uniform`` (U[0, 1), as in the authors' released code).
    """

    kind: str = "rnn"
    leak: float = 0.2
    adapt_rate: float = 0.0
    adapt_strength: float = 0.0
    momentum: float = 1.0
    noise_sd: float = 0.0
    noise_kind: str = "gaussian"

    def __post_init__(self):
        if self.kind not in CELLS:
            raise ValueError(f"cell kind={self.kind!r}; choose one of {CELLS}.")
        if self.noise_kind not in NOISE_KINDS:
            raise ValueError(f"noise_kind={self.noise_kind!r}; choose one of {NOISE_KINDS}.")
        if not 0 < self.momentum <= 1 or not 0 < self.leak <= 1:
            raise ValueError(f"leak={self.leak} and momentum={self.momentum} must lie in (0, 1].")


class CellState(NamedTuple):
    """Recurrent state: hidden ``h``, adaptation ``a`` and velocity ``v``, each ``[b, h]``."""

    h: Array
    a: Array
    v: Array


def unified_step(w_rec: Array, w_in: Array, state: CellState, x: Array, xi: Array, cfg: CellConfig) -> CellState:
    """One step of the unified second-order update (equations in the module docstring).

    Args:
        w_rec: Recurrent weights ``[h, h]`` (row vector convention: ``h @ w_rec``).
        w_in: Input weights ``[i, h]``.
        state: Current state.
        x: Input ``[b, i]``.
        xi: Unit noise ``[b, h]`` (scaled here by ``cfg.noise_sd``).
        cfg: Hyper-parameters.

    Returns:
        The next state.
    """
    drive = jax.nn.relu(state.h @ w_rec + x @ w_in - cfg.adapt_strength * state.a)
    delta = cfg.leak * (drive - state.h)
    a = (1 - cfg.adapt_rate) * state.a + cfg.adapt_rate * state.h
    v = (1 - cfg.momentum) * state.v + delta + cfg.noise_sd * xi
    return CellState(h=state.h + v, a=a, v=v)


def gru_step(w_rec: Array, w_in: Array, bias: Array, state: CellState, x: Array, xi: Array, cfg: CellConfig):
    """One noisy GRU step, ``h' = (1 - z) h + z tanh(...) + sigma xi`` (gates ordered z, r, candidate).

    Args:
        w_rec: ``[h, 3h]``.
        w_in: ``[i, 3h]``.
        bias: ``[3h]``.
        state: Current state (``a`` and ``v`` are carried unchanged).
        x: Input ``[b, i]``.
        xi: Unit noise ``[b, h]``.
        cfg: Hyper-parameters (only ``noise_sd`` is used).

    Returns:
        The next state.
    """
    gx = x @ w_in + bias
    z_x, r_x, c_x = jnp.split(gx, 3, axis=-1)
    w_z, w_r, w_c = jnp.split(w_rec, 3, axis=-1)
    z = jax.nn.sigmoid(z_x + state.h @ w_z)
    r = jax.nn.sigmoid(r_x + state.h @ w_r)
    cand = jnp.tanh(c_x + (r * state.h) @ w_c)
    return state._replace(h=(1 - z) * state.h + z * cand + cfg.noise_sd * xi)


def unit_noise(key: Array | None, shape: tuple[int, ...], kind: str) -> Array:
    """Unit-scale recurrent noise: N(0, 1), U[0, 1), or zeros when ``key`` is ``None``."""
    if key is None:
        return jnp.zeros(shape)
    if kind == "uniform":
        return jax.random.uniform(key, shape)
    return jax.random.normal(key, shape)


class ReplayRNN(nnx.Module):
    """Path-integrating RNN with an initial-state encoder and a linear readout (thin wrapper over the steps above).

    Args:
        in_dim: Input size ``i``.
        hidden_dim: Hidden units ``h``.
        out_dim: Output cells ``o``.
        cell: Recurrence hyper-parameters.
        rngs: Initialisation RNG.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, cell: CellConfig, *, rngs: nnx.Rngs):
        self.cell = cell
        width = 3 * hidden_dim if cell.kind == "gru" else hidden_dim
        normal = jax.nn.initializers.normal
        self.w_in = nnx.Param(normal(in_dim**-0.5)(rngs.params(), (in_dim, width)))
        self.w_rec = nnx.Param(normal(hidden_dim**-0.5)(rngs.params(), (hidden_dim, width)))
        self.w_out = nnx.Param(normal(hidden_dim**-0.5)(rngs.params(), (hidden_dim, out_dim)))
        # Codes are softmax-normalised (they sum to 1), so unit-variance rows give O(0.1-1) initial states.
        self.w_enc = nnx.Param(normal(1.0)(rngs.params(), (out_dim, hidden_dim)))
        self.bias = nnx.Param(jnp.zeros(width)) if cell.kind == "gru" else None

    def init_state(self, init_code: Array) -> CellState:
        """Initial state from the code of the start position, ``h0 = f(s0) @ W_enc`` ``[b, h]``."""
        h0 = init_code @ self.w_enc[...]
        return CellState(h=h0, a=jnp.zeros_like(h0), v=jnp.zeros_like(h0))

    def __call__(
        self, inputs: Array, state0: CellState, key: Array | None = None, noise_sd: float | None = None
    ) -> tuple[Array, Array, CellState]:
        """Runs the recurrence over time.

        Args:
            inputs: ``[b, t, i]``.
            state0: Initial state.
            key: Noise key; ``None`` runs noise-free (deterministic).
            noise_sd: Overrides the trained ``sigma`` (quiescence runs with ``sqrt(2) sigma``).

        Returns:
            ``(outputs [b, t, o], hidden [b, t, h], last_state)``.
        """
        b, t, _ = inputs.shape
        cell = self.cell if noise_sd is None else dataclasses.replace(self.cell, noise_sd=noise_sd)
        noise = unit_noise(key, (t, b, state0.h.shape[-1]), cell.noise_kind)
        w_rec, w_in = self.w_rec[...], self.w_in[...]
        if cell.kind == "gru":
            bias = self.bias[...]

            def step(s, xs):
                return gru_step(w_rec, w_in, bias, s, xs[0], xs[1], cell)
        else:

            def step(s, xs):
                return unified_step(w_rec, w_in, s, xs[0], xs[1], cell)

        def body(s, xs):
            s = step(s, xs)
            return s, s.h

        last, hidden = jax.lax.scan(body, state0, (jnp.swapaxes(inputs, 0, 1), noise))
        hidden = jnp.swapaxes(hidden, 0, 1)
        return hidden @ self.w_out[...], hidden, last
