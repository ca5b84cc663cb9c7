"""GRU backbone with exact ``torch.nn.GRU`` semantics (gates r, z, n; separate input and hidden biases).

Per layer, with the weights stored transposed relative to torch (``x @ w`` instead of ``W @ x``) and the gate blocks
in torch order (r, z, n) along the last axis::

    r  = σ(x W_ir + b_ir + h W_hr + b_hr)
    z  = σ(x W_iz + b_iz + h W_hz + b_hz)
    n  = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h

The input half ``x W_i + b_i`` does not depend on the state, so a window computes it for every chunk with one matmul
(:func:`gru_input_projection`) and the scan carries only the recurrent half (:func:`gru_cell`).
"""

import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from possm_jax.types import Array

_GATES = 3  # r, z, n


class GRULayerParams(NamedTuple):
    """Arrays of one GRU layer; ``3H`` axes hold the (r, z, n) blocks in that order.

    Attributes:
        w_ih: [i, 3H] input weights (torch ``weight_ih_l{k}`` transposed).
        w_hh: [H, 3H] recurrent weights (torch ``weight_hh_l{k}`` transposed).
        b_ih: [3H] input bias.
        b_hh: [3H] recurrent bias (kept apart from ``b_ih`` because ``b_hn`` sits inside ``r ⊙ (·)``).
    """

    w_ih: Array
    w_hh: Array
    b_ih: Array
    b_hh: Array


def gru_input_projection(x: Array, w_ih: Array, b_ih: Array) -> Array:
    """Input half of all three gates: ``x W_i + b_i``.

    Args:
        x: [..., i] inputs (a whole window [b, c, i] or one chunk [b, i]).
        w_ih: [i, 3H].
        b_ih: [3H].

    Returns:
        [..., 3H] pre-activations, (r, z, n) blocks.
    """
    return x @ w_ih + b_ih


def gru_cell(xp: Array, h: Array, w_hh: Array, b_hh: Array) -> Array:
    """One GRU update given the precomputed input projection.

    Args:
        xp: [b, 3H] input projection from :func:`gru_input_projection` (includes ``b_ih``).
        h: [b, H] previous hidden state.
        w_hh: [H, 3H].
        b_hh: [3H].

    Returns:
        [b, H] new hidden state.
    """
    hidden = h.shape[-1]
    hp = h @ w_hh + b_hh
    # r and z share one sigmoid over the first 2H columns; n needs r first.
    rz = jax.nn.sigmoid(xp[..., : 2 * hidden] + hp[..., : 2 * hidden])
    r, z = rz[..., :hidden], rz[..., hidden:]
    n = jnp.tanh(xp[..., 2 * hidden :] + r * hp[..., 2 * hidden :])
    return n + z * (h - n)  # = (1 − z) ⊙ n + z ⊙ h with one multiply


def gru_layer(params: GRULayerParams, x: Array, h0: Array) -> tuple[Array, Array]:
    """One GRU layer over a window: hoisted input projection, then a scan of :func:`gru_cell` over chunks.

    Args:
        params: the layer's arrays.
        x: [b, c, i] inputs.
        h0: [b, H] initial hidden state.

    Returns:
        (y [b, c, H] hidden state after every chunk, h_last [b, H]).
    """
    xp = gru_input_projection(x, params.w_ih, params.b_ih)

    def body(h: Array, xp_t: Array) -> tuple[Array, Array]:
        h = gru_cell(xp_t, h, params.w_hh, params.b_hh)
        return h, h

    h_last, ys = jax.lax.scan(body, h0, jnp.swapaxes(xp, 0, 1))
    return jnp.swapaxes(ys, 0, 1), h_last


def gru_step(layers: list[GRULayerParams], x: Array, h: Array) -> tuple[Array, Array]:
    """All layers for one chunk (inference: no dropout).

    Args:
        layers: per-layer arrays, bottom first.
        x: [b, i] one chunk's input.
        h: [L, b, H] hidden state of every layer.

    Returns:
        (y [b, H] top layer's new state, h_new [L, b, H]).
    """
    new = []
    for k, p in enumerate(layers):
        x = gru_cell(gru_input_projection(x, p.w_ih, p.b_ih), h[k], p.w_hh, p.b_hh)
        new.append(x)
    return x, jnp.stack(new)


class GRULayer(nnx.Module):
    """Parameters of one GRU layer, initialised like torch: every tensor U(±1/√H)."""

    def __init__(self, in_dim: int, hidden: int, *, rngs: nnx.Rngs):
        bound = 1.0 / math.sqrt(hidden)

        def uniform(shape: tuple[int, ...]) -> nnx.Param:
            return nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound))

        self.w_ih = uniform((in_dim, _GATES * hidden))
        self.w_hh = uniform((hidden, _GATES * hidden))
        self.b_ih = uniform((_GATES * hidden,))
        self.b_hh = uniform((_GATES * hidden,))

    def arrays(self) -> GRULayerParams:
        """The layer's parameters as plain arrays for the pure functions."""
        return GRULayerParams(self.w_ih[...], self.w_hh[...], self.b_ih[...], self.b_hh[...])


class GRU(nnx.Module):
    """Multi-layer GRU backbone (torch ``nn.GRU``, ``batch_first``), with dropout between layers in training.

    State: [L, b, H] (torch ``h_n`` layout), zeros at window or trial start.

    Args:
        in_dim: i, width of the chunk latents.
        hidden: H, hidden width and ``out_dim``.
        num_layers: L, stacked layers (layer k > 0 reads layer k − 1's outputs).
        dropout: dropout on the outputs of every layer but the last, active iff ``rngs`` is passed at call time.
        rngs: initialisation randomness (``params`` stream).
    """

    def __init__(self, in_dim: int, hidden: int, num_layers: int = 1, dropout: float = 0.0, *, rngs: nnx.Rngs):
        if in_dim < 1 or hidden < 1 or num_layers < 1:
            raise ValueError(
                f"GRU needs in_dim, hidden and num_layers >= 1, got in_dim={in_dim}, hidden={hidden}, "
                f"num_layers={num_layers}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"GRU dropout must be in [0, 1), got {dropout}.")
        self.in_dim = in_dim
        self.hidden = hidden
        self.num_layers = num_layers
        self.out_dim = hidden
        self.layers = nnx.List([GRULayer(in_dim if k == 0 else hidden, hidden, rngs=rngs) for k in range(num_layers)])
        self.dropout = nnx.Dropout(dropout)

    def init_state(self, batch: int) -> Array:
        """Zero state [L, batch, H]."""
        return jnp.zeros((self.num_layers, batch, self.hidden), jnp.float32)

    def __call__(self, x: Array, state: Array, *, rngs: nnx.Rngs | None = None) -> tuple[Array, Array]:
        """Run a window.

        Args:
            x: [b, c, i] chunk latents.
            state: [L, b, H] hidden state before the first chunk.
            rngs: pass to enable dropout between layers (training); ``None`` for evaluation.

        Returns:
            (y [b, c, H] top layer's state after every chunk, new state [L, b, H]).
        """
        h_last = []
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x, deterministic=rngs is None, rngs=rngs)
            x, h = gru_layer(layer.arrays(), x, state[k])
            h_last.append(h)
        return x, jnp.stack(h_last)

    def step(self, x: Array, state: Array) -> tuple[Array, Array]:
        """One chunk: x [b, i], state [L, b, H] -> (y [b, H], new state [L, b, H]); no dropout."""
        return gru_step([layer.arrays() for layer in self.layers], x, state)


def load_torch_gru_weights(module: GRU, tensors: Mapping[str, np.ndarray], prefix: str = "") -> None:
    """Copy a torch ``nn.GRU`` state dict into ``module`` in place.

    Reads ``{prefix}weight_ih_l{k}`` [3H, i], ``{prefix}weight_hh_l{k}`` [3H, H], ``{prefix}bias_ih_l{k}`` [3H] and
    ``{prefix}bias_hh_l{k}`` [3H] for every layer k and stores them transposed as float32.

    Args:
        module: the GRU to fill; its sizes must match the tensors.
        tensors: name -> array, e.g. an opened fixture ``.npz`` or a torch state dict converted to numpy.
        prefix: prepended to every torch name, e.g. ``"param/backbone.net."``.

    Raises:
        ValueError: a tensor is missing or has the wrong shape, or ``tensors`` hold more layers than ``module``.
    """
    loaded: list[GRULayerParams] = []
    for k in range(module.num_layers):
        in_dim = module.in_dim if k == 0 else module.hidden
        expected = {
            f"weight_ih_l{k}": (_GATES * module.hidden, in_dim),
            f"weight_hh_l{k}": (_GATES * module.hidden, module.hidden),
            f"bias_ih_l{k}": (_GATES * module.hidden,),
            f"bias_hh_l{k}": (_GATES * module.hidden,),
        }
        arrays = {}
        for name, shape in expected.items():
            key = prefix + name
            if key not in tensors:
                raise ValueError(
                    f"load_torch_gru_weights: tensor {key!r} is missing (GRU with {module.num_layers} layer(s)); "
                    f"check `prefix` ({prefix!r}) and the number of layers."
                )
            value = np.asarray(tensors[key])
            if value.shape != shape:
                raise ValueError(
                    f"load_torch_gru_weights: tensor {key!r} has shape {value.shape}, expected {shape} for "
                    f"GRU(in_dim={module.in_dim}, hidden={module.hidden}); build the module with matching sizes."
                )
            arrays[name] = jnp.asarray(value, jnp.float32)
        loaded.append(
            GRULayerParams(
                w_ih=arrays[f"weight_ih_l{k}"].T,
                w_hh=arrays[f"weight_hh_l{k}"].T,
                b_ih=arrays[f"bias_ih_l{k}"],
                b_hh=arrays[f"bias_hh_l{k}"],
            )
        )
    extra = prefix + f"weight_ih_l{module.num_layers}"
    if extra in tensors:
        raise ValueError(
            f"load_torch_gru_weights: found {extra!r} but the module has only {module.num_layers} layer(s); "
            "build the GRU with the checkpoint's number of layers."
        )
    # Assign only after every tensor validated, so a failed load leaves the module untouched.
    for layer, p in zip(module.layers, loaded, strict=True):
        layer.w_ih[...] = p.w_ih
        layer.w_hh[...] = p.w_hh
        layer.b_ih[...] = p.b_ih
        layer.b_hh[...] = p.b_hh
