"""Weight-only quantisation of a streaming step: bfloat16 or int8 matmul weights, float32 everything else.

Only the matmul weights are stored at low precision: every ``kernel`` of a linear layer and the GRU's ``w_ih`` /
``w_hh`` ([in, out] each). Embedding tables, biases, norms, SSM parameters, the recurrent state and every
accumulation stay float32. Formats:

* ``"f32"``: unchanged.
* ``"bf16"``: each weight rounded to bfloat16 (8 significant bits, relative error <= 2^-8 per weight).
* ``"int8"``: per-output-channel symmetric int8, ``w[:, o] ~= q[:, o] * scale[o]`` with
  ``scale[o] = max_i |w[i, o]| / 127``, so each weight is off by at most ``scale[o] / 2``.

Inside the step the weight is dequantised (``q.astype(f32) * scale``) right before its matmul. When the weights are
compile-time constants (:func:`possm_jax.streaming.make_step`), XLA on CPU folds that dequantisation into a float32
constant, so a quantised step runs at float32 speed there: the gain is the size of an exported step
(:func:`possm_jax.streaming.export_step` stores the int8 / bf16 constants) and the memory traffic on accelerators whose
matmuls read the narrow type. See ``docs/streaming.md`` for measured latency and accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

WEIGHT_FORMATS = ("f32", "bf16", "int8")
QUANTIZED_NAMES = frozenset({"kernel", "w_ih", "w_hh"})
"""Parameter names of the matmul weights ([in, out]) that a quantised format stores at low precision."""
R2_DROP_LIMIT = 0.005
"""Largest test-R² drop against float32 that :func:`check_r2_drop` accepts for a quantised format."""


class QuantizedWeight(NamedTuple):
    """A low-precision weight: ``values`` (int8 or bfloat16, [in, out]) and ``scale`` ([out] float32, or None)."""

    values: np.ndarray
    scale: np.ndarray | None


def check_format(weights: str) -> None:
    """Raise ValueError unless ``weights`` is one of :data:`WEIGHT_FORMATS`."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights={weights!r}: expected one of {WEIGHT_FORMATS}.")


def quantize_array(w: np.ndarray, weights: str) -> QuantizedWeight:
    """Quantise one [..., out] weight to ``weights`` ("bf16" or "int8"); int8 scales are per output channel.

    Args:
        w: float32 weight, output channels on the last axis.
        weights: "bf16" or "int8".

    Returns:
        The quantised weight (numpy arrays, so they become compile-time constants when closed over).
    """
    w = np.asarray(w, np.float32)
    if weights == "bf16":
        return QuantizedWeight(np.asarray(jnp.asarray(w, jnp.bfloat16)), None)
    peak = np.max(np.abs(w), axis=tuple(range(w.ndim - 1)))
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)  # an all-zero column keeps scale 1
    return QuantizedWeight(np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale)


def dequantize(q: QuantizedWeight) -> jax.Array:
    """The float32 weight a :class:`QuantizedWeight` stands for (traced inside the step, next to its matmul)."""
    w = jnp.asarray(q.values).astype(jnp.float32)
    return w if q.scale is None else w * jnp.asarray(q.scale)


def _is_weight(path: tuple) -> bool:
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    return any(n in QUANTIZED_NAMES for n in names[-2:])


def quantize_state(params: nnx.State, weights: str) -> nnx.State:
    """``params`` (from ``nnx.split``) with every matmul weight replaced by a :class:`QuantizedWeight` leaf."""
    check_format(weights)
    if weights == "f32":
        return params
    return jax.tree_util.tree_map_with_path(
        lambda path, x: quantize_array(x, weights) if _is_weight(path) and np.ndim(x) == 2 else x, params
    )


def dequantize_state(params: nnx.State) -> nnx.State:
    """Inverse of :func:`quantize_state` up to the rounding: every :class:`QuantizedWeight` back to float32."""
    is_q = lambda x: isinstance(x, QuantizedWeight)  # noqa: E731
    return jax.tree.map(lambda x: dequantize(x) if is_q(x) else x, params, is_leaf=is_q)


def fake_quantized(model: nnx.Module, weights: str) -> nnx.Module:
    """A float32 copy of ``model`` whose matmul weights hold their quantised values (window forward, R² checks).

    Its window forward computes what the quantised streaming step computes (same weights, float32 arithmetic).
    """
    graphdef, params = nnx.split(model)
    return nnx.merge(graphdef, jax.jit(dequantize_state)(quantize_state(params, weights)))


def weight_bytes(params: nnx.State) -> int:
    """Bytes of every array leaf (quantised weights count their values and scales)."""
    return sum(np.asarray(x).nbytes for x in jax.tree.leaves(params))


def r2_costs(model: nnx.Module, r2: Callable[[nnx.Module], float]) -> dict[str, dict[str, float]]:
    """Test R² of every format next to float32's, raising for none: {format: {"r2", "drop", "refused"}}."""
    base = float(r2(model))
    out = {"f32": {"r2": base, "drop": 0.0}}
    for weights in WEIGHT_FORMATS[1:]:
        got = float(r2(fake_quantized(model, weights)))
        out[weights] = {"r2": got, "drop": base - got, "refused": base - got > R2_DROP_LIMIT}
    return out


def check_r2_drop(model: nnx.Module, weights: str, r2: Callable[[nnx.Module], float]) -> dict[str, float]:
    """Refuse a format that costs too much accuracy: compare ``r2`` of the float32 and the quantised model.

    Args:
        model: the trained float32 model.
        weights: the format to check.
        r2: model -> test R² (the same data and scoring for both calls).

    Returns:
        ``{"r2_f32", "r2", "drop"}``.

    Raises:
        ValueError: the drop exceeds :data:`R2_DROP_LIMIT`; use a wider format (bf16 or f32) for this model.
    """
    base = float(r2(model))
    got = base if weights == "f32" else float(r2(fake_quantized(model, weights)))
    drop = base - got
    if drop > R2_DROP_LIMIT:
        raise ValueError(
            f"weights={weights!r} lowers test R² from {base:.4f} to {got:.4f} (drop {drop:.4f} > {R2_DROP_LIMIT}); "
            "stream this model with a wider format (weights='bf16' or 'f32')."
        )
    return {"r2_f32": base, "r2": got, "drop": drop}
