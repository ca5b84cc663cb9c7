"""Data throughput (docs/benchmarks.md): training windows per second for slice + tokenize + batch, on one core.

The PyTorch reference prepares a window in about 0.73 ms; the goal here is at least 20,000 windows/s per core.
Measured in this process without worker processes or threads; pin it to one core for a per-core figure::

    taskset -c 0 .venv/bin/python -m data_pipeline.throughput --preset=tiny
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import grain
import numpy as np

from data_pipeline.batcher import WindowBatcher
from data_pipeline.pipeline import SessionWindows, VocabMap, make_train_dataset, prepare_sessions
from data_pipeline.recording import Recording
from data_pipeline.tokenize import TokenizerConfig
from data_pipeline.unit_dropout import UnitDropoutConfig

_DESCRIPTOR_DTYPES = (np.int64, np.float64, np.uint64)  # (session position, window start, key)


def _timed(step, seconds: float) -> np.ndarray:
    """Calls ``step(i)`` for i = 0, 1, ... until ``seconds`` have passed; returns each call's duration."""
    step(0)  # warm caches outside the timing
    durations, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        step(len(durations))
        durations.append(time.perf_counter() - t)
    return np.array(durations)


def measure_windows_per_second(
    recordings: Sequence[Recording],
    cfg: TokenizerConfig,
    batch_size: int = 64,
    seconds: float = 5.0,
    *,
    vocab_maps: Sequence[VocabMap] | None = None,
    unit_dropout: UnitDropoutConfig | None = UnitDropoutConfig(),
    seed: int = 0,
) -> dict:
    """Measures windows/s for slice + tokenize + batch, alone and through the whole grain pipeline.

    ``windows_per_second`` times :class:`WindowBatcher` on pre-drawn window starts (the work per batch in training);
    ``grain_windows_per_second`` times the full grain iterator, adding window sampling and session mixing. Rates
    use the median batch time, which shrugs off other processes on a shared machine; ``windows_per_second_mean``
    uses the mean.

    Args:
        recordings: the sessions to draw training windows from.
        cfg: tokenizer configuration.
        batch_size: windows per batch.
        seconds: time spent on each of the two measurements.
        vocab_maps: per recording ``(unit_index, session_index)``; None numbers units and sessions consecutively.
        unit_dropout: unit dropout as in training; None to measure without it.
        seed: data seed.

    Returns:
        ``windows_per_second``, ``windows_per_second_mean``, ``ms_per_window``, ``grain_windows_per_second``,
        ``spikes_per_window`` (mean real tokens), ``batch_size``, ``sizes`` (padded ``s, q, c``) and ``batches``
        (timed batcher calls).
    """
    if vocab_maps is None:
        sizes = [len(r.unit_ids) for r in recordings]
        first = np.cumsum([1, *sizes[:-1]])
        vocab_maps = [(np.arange(a, a + u), i + 1) for i, (a, u) in enumerate(zip(first, sizes, strict=True))]
    sessions = prepare_sessions(recordings, vocab_maps, cfg)
    batcher = WindowBatcher(sessions, cfg, unit_dropout=unit_dropout)

    # Pre-draw 64 batches of window descriptors from the sessions' own window sources, mixed by train time.
    rng = np.random.default_rng(seed)
    sources = [SessionWindows(i, s.session_index, s.train, cfg.window, seed) for i, s in enumerate(sessions)]
    weights = np.array([s.train.total_duration() for s in sessions])
    position = rng.choice(len(sessions), size=(64, batch_size), p=weights / weights.sum())
    pre = []
    for r, row in enumerate(position):
        drawn = [sources[p][r * batch_size + i] for i, p in enumerate(row)]
        pre.append(tuple(np.array([d[k] for d in drawn], dtype) for k, dtype in enumerate(_DESCRIPTOR_DTYPES)))
    tokens = [int(batcher(*args)["spike_mask"].sum()) for args in pre]

    durations = _timed(lambda i: batcher(*pre[i % len(pre)]), seconds)

    dataset, _ = make_train_dataset(sessions, cfg, batch_size, seed, unit_dropout=unit_dropout)
    it = iter(dataset.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))
    grain_durations = _timed(lambda i: next(it), seconds)
    return {
        "windows_per_second": batch_size / float(np.median(durations)),
        "windows_per_second_mean": batch_size / float(np.mean(durations)),
        "ms_per_window": 1e3 * float(np.median(durations)) / batch_size,
        "grain_windows_per_second": batch_size / float(np.median(grain_durations)),
        "spikes_per_window": float(np.mean(tokens)) / batch_size,
        "batch_size": batch_size,
        "sizes": tuple(batcher.sizes),
        "batches": len(durations),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """CLI: measure on a synthetic preset and print the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="synthetic reaching preset (tiny, demo, bench)")
    parser.add_argument("--sessions", type=int, default=0, help="use only the first N sessions (0: all)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no_dropout", action="store_true", help="measure without unit dropout")
    args = parser.parse_args(argv)
    from data_pipeline.synth.presets import get_preset
    from data_pipeline.synth.sessions import generate

    recordings = []
    for _, rec in generate(get_preset(args.preset), seed=0):
        recordings.append(rec)
        if args.sessions and len(recordings) == args.sessions:
            break
    result = measure_windows_per_second(
        recordings,
        TokenizerConfig(),
        args.batch_size,
        args.seconds,
        unit_dropout=None if args.no_dropout else UnitDropoutConfig(),
    )
    result["preset"], result["num_sessions"] = args.preset, len(recordings)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
