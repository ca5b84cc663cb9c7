"""Pieces shared by the human-BCI tasks: binned model configs, training iterators, batched and streamed prediction.

A task module (:mod:`possm_jax.tasks.handwriting`, :mod:`possm_jax.tasks.speech`) owns one frozen config whose
``bin_width`` is the single source of the chunk length: :func:`binned_model_config` copies it into the model config,
the batch sources read it, and :func:`check_model` refuses a model whose chunk length or readouts differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import grain
import numpy as np

from data_pipeline import binned_tokens as bt
from data_pipeline.recording import Recording
from data_pipeline.trial_batches import BinnedSession
from possm_jax.config import POSSMConfig, get_preset
from possm_jax.eval.evaluate import make_predict
from possm_jax.possm import POSSM
from possm_jax.streaming import Streamer


def binned_model_config(
    base: POSSMConfig | None, *, bin_width: float, tasks: Mapping[str, int], num_latents: int, depth: int
) -> POSSMConfig:
    """``base`` with binned inputs, the task's chunk length, readouts and latents. ``base`` None: ``possm_small``
    with the count read-in, as the task launchers configure it (``docs/tasks.md``).

    Raises:
        ValueError: ``num_latents < 1`` or ``depth < 1`` (the tasks need in-chunk self-attention among the latents).
    """
    if num_latents < 1 or depth < 1:
        raise ValueError(
            f"task config: num_latents={num_latents} and depth={depth}: the binned tasks need num_latents >= 1 and "
            "depth >= 1 (in-chunk self-attention over the latents); the paper's setting is num_latents=4, depth=1"
        )
    if base is None:
        base = get_preset("possm_small", input_kind="binned", count_readin=True)
    return dataclasses.replace(
        base, bin_width=bin_width, tasks=dict(tasks), num_latents=num_latents, depth=depth, input_kind="binned"
    )


def check_model(model_cfg: POSSMConfig, expected: POSSMConfig, task: str) -> None:
    """Raises ValueError unless ``model_cfg`` has the chunk length, input kind and readouts the task needs."""
    for field in ("bin_width", "input_kind", "tasks"):
        have, want = getattr(model_cfg, field), getattr(expected, field)
        if have != want:
            raise ValueError(
                f"{task}: the model's {field} is {have!r} but the task config needs {want!r}; build the model "
                f"config with possm_jax.tasks.{task}.model_config(task_config)"
            )


def binned_sessions(recordings: Sequence[Recording], vocab_maps: Sequence[tuple[np.ndarray, int]]) -> list:
    """One :class:`~data_pipeline.trial_batches.BinnedSession` per recording."""
    if len(recordings) != len(vocab_maps):
        raise ValueError(f"vocab_maps: got {len(vocab_maps)} for {len(recordings)} recordings; pass one per recording")
    return [BinnedSession.build(r, m) for r, m in zip(recordings, vocab_maps, strict=True)]


def make_iterator(
    dataset: grain.MapDataset, *, shard_index: int = 0, shard_count: int = 1, prefetch: int = 2
) -> grain.DatasetIterator:
    """A checkpointable iterator over this host's slice of a training ``MapDataset`` (``get_state``/``set_state``)."""
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index: need 0 <= shard_index < shard_count={shard_count}, got {shard_index}")
    read = grain.ReadOptions(num_threads=1 if prefetch else 0, prefetch_buffer_size=prefetch)
    return iter(dataset[shard_index::shard_count].to_iter_dataset(read))


def predict_batches(model: POSSM, batches, task: str):
    """Yields ``(batch, example ids, logits [b, q, k])`` of ``task`` for ``(batch, ids)`` pairs (jitted forward)."""
    predict = make_predict(model)
    for batch, ids in batches:
        yield batch, ids, predict(batch)[task]


def stream_chunk_logits(
    streamer: Streamer, batch: Mapping[str, np.ndarray], row: int, model_cfg: POSSMConfig, task: str
) -> np.ndarray:
    """Runs one row of a window batch through a :class:`~possm_jax.streaming.Streamer`, chunk by chunk.

    Each chunk gets one query of ``task`` at the end of its bin, so this is what a real-time decoder emits.

    Args:
        streamer: the streaming wrapper of the model.
        batch: a task batch (``spike_*``, ``chunk_mask``, ``session``).
        row: which row to stream.
        model_cfg: the model's config (chunk length, task order).
        task: the task whose logits to return.

    Returns:
        [c, k] logits, one row per real chunk.
    """
    real = np.asarray(batch["spike_mask"][row], bool)
    chunk_of = np.asarray(batch["spike_chunk"][row])
    bin_width = model_cfg.bin_width
    queries = {
        "session": np.asarray(batch["session"][row : row + 1], np.int32),
        "query_time": np.full((1, 1), bt.query_offset(bin_width), np.float32),
        "query_task": np.full((1, 1), model_cfg.task_names.index(task), np.int32),
    }
    state, out = streamer.init(1), []
    for j in range(int(np.sum(batch["chunk_mask"][row]))):
        sel = real & (chunk_of == j)
        chunk = {k: np.asarray(batch[k][row][sel])[None] for k in ("spike_unit", "spike_time", "spike_value")}
        chunk["spike_mask"] = np.ones((1, int(sel.sum())), bool)
        state, preds = streamer(state, chunk, queries)
        out.append(np.asarray(preds[task])[0, 0])
    return np.stack(out)
