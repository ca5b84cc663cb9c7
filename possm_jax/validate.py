"""Host-side checks of model inputs, run on concrete (numpy) arrays before any jit, never inside traced code.

Each failure raises :class:`InputError` (a ``ValueError``) naming the offending argument and saying how to fix it,
instead of an XLA shape error or a silently wrong answer (out-of-range indices are clamped by gathers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import jax
import numpy as np

from possm_jax.config import POSSMConfig


class InputError(ValueError):
    """A model input has the wrong keys, shape, dtype or values."""


class _ModelInfo(Protocol):
    config: POSSMConfig
    num_units: int
    num_sessions: int


def is_traced(tree: Any) -> bool:
    """True if any leaf is a JAX tracer (we are inside jit / grad), where values cannot be inspected."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


_INT, _FLOAT, _BOOL = "integer", "floating", "bool"
_KIND_CHECK = {
    _INT: lambda a: np.issubdtype(a.dtype, np.integer),
    _FLOAT: lambda a: np.issubdtype(a.dtype, np.floating),
    _BOOL: lambda a: a.dtype == np.bool_,
}


def _fetch(inputs: Mapping[str, Any], arg: str, key: str, kind: str, ndim: int) -> np.ndarray:
    """inputs[key] as a numpy array of the given dtype kind and rank, or InputError naming ``arg[key]``."""
    if key not in inputs:
        raise InputError(f"{arg}: missing key {key!r}; required keys are listed in possm_jax.validate.")
    a = np.asarray(inputs[key])
    if not _KIND_CHECK[kind](a):
        raise InputError(f"{arg}[{key!r}] has dtype {a.dtype}; expected a {kind} array.")
    if a.ndim != ndim:
        raise InputError(f"{arg}[{key!r}] has shape {a.shape}; expected {ndim} dimension(s).")
    return a


def _same_shape(arg: str, arrays: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    shapes = {k: a.shape for k, a in arrays.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        raise InputError(f"{arg}: arrays {sorted(shapes)} must have the same shape, got {shapes}.")
    return first


def _in_range(arg: str, key: str, values: np.ndarray, low: float, high: float, what: str) -> None:
    """Raise unless ``low <= values < high`` (and finite)."""
    bad = ~np.isfinite(values) | (values < low) | (values >= high)
    if np.any(bad):
        first = values[bad].flat[0]
        raise InputError(f"{arg}[{key!r}] contains {first!r}; {what} must lie in [{low}, {high}).")


def _check_tokens(arg: str, inputs: Mapping[str, Any], model: _ModelInfo, chunk_key: str | None) -> None:
    """Spike-token arrays [b, s] (optionally with their chunk index) of a window or a streaming chunk."""
    cfg = model.config
    arrays = {
        "spike_unit": _fetch(inputs, arg, "spike_unit", _INT, 2),
        "spike_time": _fetch(inputs, arg, "spike_time", _FLOAT, 2),
        "spike_mask": _fetch(inputs, arg, "spike_mask", _BOOL, 2),
    }
    if cfg.input_kind == "binned":
        arrays["spike_value"] = _fetch(inputs, arg, "spike_value", _FLOAT, 2)
    if chunk_key is not None:
        arrays[chunk_key] = _fetch(inputs, arg, chunk_key, _INT, 2)
    _same_shape(arg, arrays)
    real = arrays["spike_mask"]
    _in_range(arg, "spike_unit", arrays["spike_unit"][real], 0, model.num_units, "unit ids (the unit vocabulary)")
    _in_range(arg, "spike_time", arrays["spike_time"][real], 0.0, cfg.bin_width, "times since the chunk start")
    if "spike_value" in arrays:
        _in_range(arg, "spike_value", arrays["spike_value"][real], -np.inf, np.inf, "values")
    if chunk_key is not None and "spike_window" in inputs:  # packed rows: one sorted token list across all rows
        window = _fetch(inputs, arg, "spike_window", _INT, 2)
        _same_shape(arg, {**arrays, "spike_window": window})
        b = real.shape[0]
        _in_range(arg, "spike_window", window[real], 0, b, "window indices (batch rows)")
        chunk, time = arrays[chunk_key][real], arrays["spike_time"][real]
        _check_sorted(arg, "the packed tokens (window, chunk, time)", window[real], chunk, time)
        return
    for row in range(real.shape[0]):
        t = arrays["spike_time"][row][real[row]]
        c = arrays[chunk_key][row][real[row]] if chunk_key is not None else np.zeros(t.shape, np.int64)
        _check_sorted(arg, f"real tokens of batch row {row} (chunk, time)", np.zeros(t.shape, np.int64), c, t)


def _check_sorted(arg: str, what: str, window: np.ndarray, chunk: np.ndarray, time: np.ndarray) -> None:
    """Raise unless the tokens are sorted by (window, chunk, time)."""
    dw, dc, dt = np.diff(window), np.diff(chunk), np.diff(time.astype(np.float64))
    backwards = (dw < 0) | ((dw == 0) & ((dc < 0) | ((dc == 0) & (dt < 0))))
    if np.any(backwards):
        raise InputError(
            f"{arg}: {what} are not sorted at position {int(np.argmax(backwards)) + 1}; "
            "sort spikes by time before tokenizing."
        )


def _check_queries(arg: str, inputs: Mapping[str, Any], model: _ModelInfo, batch: int, chunk_key: str | None):
    cfg = model.config
    session = _fetch(inputs, arg, "session", _INT, 1)
    if session.shape != (batch,):
        raise InputError(f"{arg}['session'] has shape {session.shape}; expected ({batch},), one per batch row.")
    _in_range(arg, "session", session, 0, model.num_sessions, "session ids (the session vocabulary)")
    arrays = {
        "query_time": _fetch(inputs, arg, "query_time", _FLOAT, 2),
        "query_task": _fetch(inputs, arg, "query_task", _INT, 2),
    }
    mask = inputs.get("query_mask")
    if mask is not None or chunk_key is not None:
        arrays["query_mask"] = _fetch(inputs, arg, "query_mask", _BOOL, 2)
    if chunk_key is not None:
        arrays[chunk_key] = _fetch(inputs, arg, chunk_key, _INT, 2)
    shape = _same_shape(arg, arrays)
    if shape[0] != batch:
        raise InputError(f"{arg}: query arrays have batch size {shape[0]}, but the spike arrays have {batch}.")
    real = arrays["query_mask"] if "query_mask" in arrays else np.ones(shape, bool)
    _in_range(arg, "query_time", arrays["query_time"][real], 0.0, cfg.bin_width, "query times since the chunk start")
    _in_range(arg, "query_task", arrays["query_task"][real], 0, len(cfg.tasks), f"task indices into {cfg.task_names}")


def check_batch(batch: Mapping[str, Any], model: _ModelInfo) -> None:
    """Validate a window batch (keys of ``data_pipeline.batch_layout.MODEL_INPUT_KEYS``) on the host.

    Raises:
        InputError: naming the offending key and the fix.
    """
    if not isinstance(batch, Mapping):
        raise InputError(f"batch must be a mapping of arrays, got {type(batch).__name__}.")
    chunk_mask = _fetch(batch, "batch", "chunk_mask", _BOOL, 2)
    b, c = chunk_mask.shape
    if b == 0 or c == 0:
        raise InputError(f"batch['chunk_mask'] has shape {chunk_mask.shape}: empty window(s); need b >= 1, c >= 1.")
    _check_tokens("batch", batch, model, chunk_key="spike_chunk")
    if np.asarray(batch["spike_unit"]).shape[0] != b:
        raise InputError(f"batch: spike arrays have batch size {np.asarray(batch['spike_unit']).shape[0]}, not {b}.")
    real = np.asarray(batch["spike_mask"])
    _in_range("batch", "spike_chunk", np.asarray(batch["spike_chunk"])[real], 0, c, "chunk indices (chunk_mask)")
    _check_queries("batch", batch, model, b, chunk_key="query_chunk")
    q_real = np.asarray(batch["query_mask"])
    _in_range("batch", "query_chunk", np.asarray(batch["query_chunk"])[q_real], 0, c, "chunk indices (chunk_mask)")


def check_step(chunk: Mapping[str, Any], queries: Mapping[str, Any], model: _ModelInfo) -> None:
    """Validate one streaming chunk and its queries on the host.

    Raises:
        InputError: naming the offending argument (``chunk`` or ``queries``) and key.
    """
    for arg, value in (("chunk", chunk), ("queries", queries)):
        if not isinstance(value, Mapping):
            raise InputError(f"{arg} must be a mapping of arrays, got {type(value).__name__}.")
    _check_tokens("chunk", chunk, model, chunk_key=None)
    b = np.asarray(chunk["spike_unit"]).shape[0]
    if b == 0:
        raise InputError("chunk['spike_unit'] has batch size 0; pass at least one stream.")
    _check_queries("queries", queries, model, b, chunk_key=None)
