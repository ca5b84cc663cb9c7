"""The tokenized batch: the contract between ``data_pipeline`` and ``possm_jax``.

A batch is a ``dict[str, np.ndarray]`` with a leading batch axis ``b``. Sizes ``s`` (spike tokens), ``q``
(queries) and, for evaluation trials of any length, ``c`` (chunks) are padded to buckets so that jit sees few
distinct shapes; padded chunks sit at the end of a window with ``chunk_mask = False``. Every window has ``c`` chunks of
``bin_width`` seconds; chunk ``j`` covers ``[j * bin_width, (j + 1) * bin_width)`` of the window.

Times are *local*: a spike's time is measured from its chunk's start, a query's time from the start of the chunk
that contains it. The model never sees absolute recording times, so a window and an hours-long stream produce the
same numbers (see docs/model.md, RoPE). Times are computed in float64 and cast to float32 at the end.

Spike tokens are sorted by (chunk, time); padding sits at the end with ``spike_mask = False``.
"""

import numpy as np

# key: (dtype, shape legend, meaning)
BATCH_FIELDS: dict[str, tuple[type, str, str]] = {
    "spike_unit": (np.int32, "b s", "global unit-vocabulary index; 0 for padding"),
    "spike_chunk": (
        np.int32,
        "b s",
        "0-based chunk of the token within its window; padding repeats the last",
    ),
    "spike_time": (np.float32, "b s", "seconds since the start of the token's chunk, in [0, bin_width)"),
    "spike_value": (np.float32, "b s", "token value: 1.0 for spikes, the normalised count for binned inputs"),
    "spike_mask": (np.bool_, "b s", "True for real tokens"),
    "chunk_mask": (np.bool_, "b c", "True for real chunks; a window's chunk count c is this array's length"),
    "session": (np.int32, "b", "session-vocabulary index of the window"),
    "query_chunk": (np.int32, "b q", "0-based chunk containing the query time"),
    "query_time": (np.float32, "b q", "seconds since the start of the query's chunk, in [0, bin_width)"),
    "query_task": (np.int32, "b q", "0-based index into the model's task list"),
    "query_mask": (np.bool_, "b q", "True for real queries"),
    "target": (np.float32, "b q y", "z-scored target values (y = widest task output; narrower tasks pad)"),
    "weight": (np.float32, "b q", "loss weight per query (0 for padding and excluded intervals)"),
}
"""Every key of a training/evaluation batch. Inference-only batches may omit ``target`` and ``weight``."""

PACKED_FIELDS: dict[str, tuple[type, str, str]] = {
    "spike_window": (
        np.int32,
        "b s",
        "batch row (window) of the token; present only when tokens are packed across rows (data_pipeline.packing)",
    ),
}
"""Optional keys. With ``spike_window``, the rows of the ``spike_*`` arrays no longer belong to one window each:
tokens are sorted by (window, chunk, time) over the flattened rows of each device shard, padding after each shard's
real tokens."""

MODEL_INPUT_KEYS = (
    "spike_unit",
    "spike_chunk",
    "spike_time",
    "spike_value",
    "spike_mask",
    "chunk_mask",
    "session",
    "query_chunk",
    "query_time",
    "query_task",
    "query_mask",
)
"""The keys the model's forward pass reads."""
