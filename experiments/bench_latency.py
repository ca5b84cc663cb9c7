r"""Streaming latency per 50 ms chunk for POSSM and every baseline, plus offline batched throughput.

Protocol: batch 1, ``rate × 100 units × 50 ms`` spikes per chunk (5, 20, 80 Hz per unit -> 25, 100, 400 spikes) and
5 queries per chunk; warm up, then time each call with ``block_until_ready``; median and p99 in microseconds.
Inputs are pre-padded host (numpy) arrays, as a real-time loop would hold them; the step of POSSM is
:func:`possm_jax.streaming.make_step` (weights baked in as constants). Baselines:

* ``binned_{gru,s4d,mamba}``: one step of :class:`~possm_jax.baselines.binned_rnn.BinnedRNN` on a pre-binned count
  vector, with the backbone of the matching ``possm_small*`` preset.
* ``wiener``: numpy, shift the 5-tap count history and one matvec.
* ``poyo_d64`` / ``poyo_d256``: the POYO-style transformer re-run over the last 1 s (20 chunks) on every chunk.
* ``possm*_rerun``: POSSM's window forward over the last 1 s on every chunk (what a stateless deployment costs).

Thread count is set by the environment before JAX starts, so :func:`run_subprocess` launches this module in a child
process: ``threads="1"`` pins it to core 0 (``taskset -c 0``) with single-threaded XLA; ``"all"`` leaves it free::

  python -m experiments.bench_latency --out=runs/bench/latency_all.json [--mode=full|quick|smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

RATES_HZ = (5, 20, 80)
NUM_UNITS = 100
QUERIES_PER_CHUNK = 5
BIN_WIDTH = 0.05
WINDOW_CHUNKS = 20
ONE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

POSSM_PRESETS = ("possm_small", "possm_small_s4d", "possm_small_mamba", "possm", "possm_s4d", "possm_mamba")
MODES = {
    # mode: (possm presets, rates, timed steps, rerun presets, poyo widths, offline batch sizes)
    "full": (POSSM_PRESETS, RATES_HZ, 300, ("possm_small", "possm"), (64, 256), (64,)),
    "quick": (("possm_small", "possm"), (20,), 100, (), (64,), (64,)),
    "smoke": (("possm_small",), (20,), 20, ("possm_small",), (64,), (8,)),
}
STREAMING_MODES = {
    # mode: ({preset: weight formats} for Streamer vs inner step, presets profiled, stream counts); all at 20 Hz
    "full": (
        {"possm_small": ("f32", "bf16", "int8"), "possm": ("f32", "bf16", "int8")},
        ("possm_small", "possm"),
        (1, 8, 32, 128),
    ),
    "quick": ({"possm_small": ("f32", "int8")}, ("possm_small",), (32,)),
    "smoke": ({"possm_small": ("f32",)}, ("possm_small",), (2,)),
}


def spikes_per_chunk(rate_hz: float) -> int:
    """Expected spikes in one chunk from 100 units firing at ``rate_hz``."""
    return round(rate_hz * NUM_UNITS * BIN_WIDTH)


def time_calls(call: Callable[[int], object], steps: int, warmup: int = 10) -> dict[str, float]:
    """Runs ``call(i)`` (which must block until its result is ready) ``warmup + steps`` times.

    Returns:
        ``{"median_us", "p99_us", "mean_us", "cpu_median_us", "steps"}`` over the timed calls.
    """
    for i in range(warmup):
        call(i)
    times, cpu = np.empty(steps), np.empty(steps)
    for i in range(steps):
        t, c = time.perf_counter(), time.process_time()
        call(i)
        times[i], cpu[i] = time.perf_counter() - t, time.process_time() - c
    us = times * 1e6
    return {
        "median_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        "cpu_median_us": float(np.median(cpu * 1e6)),  # process CPU time: less sensitive to a shared machine
        "steps": steps,
    }


def _random_chunks(rng: np.random.Generator, n: int, bucket: int, count: int = 8) -> list[dict[str, np.ndarray]]:
    """``count`` padded chunks of ``n`` spikes (units 1..100, times sorted in [0, bw))."""
    out = []
    for _ in range(count):
        chunk = {
            "spike_unit": np.zeros((1, bucket), np.int32),
            "spike_time": np.zeros((1, bucket), np.float32),
            "spike_value": np.ones((1, bucket), np.float32),
            "spike_mask": np.zeros((1, bucket), bool),
        }
        chunk["spike_unit"][0, :n] = rng.integers(1, NUM_UNITS + 1, n)
        chunk["spike_time"][0, :n] = np.sort(rng.uniform(0, BIN_WIDTH, n))
        chunk["spike_mask"][0, :n] = True
        out.append(chunk)
    return out


def _queries(bucket: int) -> dict[str, np.ndarray]:
    query_time = np.zeros((1, bucket), np.float32)
    query_time[0, :QUERIES_PER_CHUNK] = (np.arange(QUERIES_PER_CHUNK) + 1) * BIN_WIDTH / (QUERIES_PER_CHUNK + 1)
    return {"session": np.ones(1, np.int32), "query_time": query_time, "query_task": np.zeros((1, bucket), np.int32)}


def _window(rng: np.random.Generator, n_per_chunk: int, batch: int = 1) -> dict[str, np.ndarray]:
    """A batch of 1 s windows (20 chunks of ``n_per_chunk`` spikes) with 5 queries in the last chunk."""
    from data_pipeline.buckets import next_pow2

    s = next_pow2(WINDOW_CHUNKS * n_per_chunk, 16)
    n = WINDOW_CHUNKS * n_per_chunk
    out = {
        "spike_unit": np.zeros((batch, s), np.int32),
        "spike_chunk": np.full((batch, s), WINDOW_CHUNKS - 1, np.int32),
        "spike_time": np.zeros((batch, s), np.float32),
        "spike_value": np.ones((batch, s), np.float32),
        "spike_mask": np.zeros((batch, s), bool),
        "chunk_mask": np.ones((batch, WINDOW_CHUNKS), bool),
        "session": np.ones(batch, np.int32),
        "query_chunk": np.full((batch, QUERIES_PER_CHUNK), WINDOW_CHUNKS - 1, np.int32),
        "query_time": np.tile(_queries(QUERIES_PER_CHUNK)["query_time"], (batch, 1)),
        "query_task": np.zeros((batch, QUERIES_PER_CHUNK), np.int32),
        "query_mask": np.ones((batch, QUERIES_PER_CHUNK), bool),
    }
    out["spike_unit"][:, :n] = rng.integers(1, NUM_UNITS + 1, (batch, n))
    out["spike_chunk"][:, :n] = np.repeat(np.arange(WINDOW_CHUNKS), n_per_chunk)
    out["spike_time"][:, :n] = rng.uniform(0, BIN_WIDTH, (batch, n))
    out["spike_mask"][:, :n] = True
    return out


def _jit_forward(model):
    """The window forward jitted with the weights as constants (as :func:`make_step` does for the step)."""
    import jax
    from flax import nnx

    graphdef, params = nnx.split(model)
    return jax.jit(lambda batch: nnx.merge(graphdef, params)(batch)[0])


def possm_step_row(preset: str, rate: float, steps: int) -> dict:
    """POSSM streaming step with carried state."""
    import jax
    from flax import nnx

    from data_pipeline.buckets import next_pow2
    from possm_jax.config import get_preset
    from possm_jax.possm import POSSM
    from possm_jax.streaming import MIN_QUERY_BUCKET, MIN_SPIKE_BUCKET, make_step

    model = POSSM(get_preset(preset), NUM_UNITS + 1, 2, rngs=nnx.Rngs(0))
    n = spikes_per_chunk(rate)
    chunks = _random_chunks(np.random.default_rng(0), n, next_pow2(n, MIN_SPIKE_BUCKET))
    queries = _queries(next_pow2(QUERIES_PER_CHUNK, MIN_QUERY_BUCKET))
    step_fn = make_step(model)
    state = [model.init_stream(1)]

    def call(i: int) -> None:
        state[0], preds = step_fn(state[0], chunks[i % len(chunks)], queries)
        jax.block_until_ready(preds)

    t = time.perf_counter()
    call(0)
    compile_s = time.perf_counter() - t
    return {"compile_s": compile_s, **time_calls(call, steps)}


def rerun_row(model, rate: float, steps: int) -> dict:
    """A stateless model (POSSM window forward or POYO) re-run over the last 1 s for every chunk."""
    import jax

    forward = _jit_forward(model)
    windows = [_window(np.random.default_rng(k), spikes_per_chunk(rate)) for k in range(4)]

    def call(i: int) -> None:
        jax.block_until_ready(forward(windows[i % len(windows)]))

    t = time.perf_counter()
    call(0)
    compile_s = time.perf_counter() - t
    return {"compile_s": compile_s, **time_calls(call, steps)}


def binned_row(kind: str, rate: float, steps: int) -> dict:
    """One bin of a binned RNN baseline (backbone of ``possm_small`` / ``_s4d`` / ``_mamba``)."""
    import jax
    from flax import nnx

    from possm_jax.baselines.binned_rnn import BinnedRNN
    from possm_jax.config import DEFAULT_TASKS, get_preset

    preset = {"gru": "possm_small", "s4d": "possm_small_s4d", "mamba": "possm_small_mamba"}[kind]
    model = BinnedRNN(NUM_UNITS, get_preset(preset).backbone, DEFAULT_TASKS, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    step_fn = jax.jit(lambda counts, state: nnx.merge(graphdef, params).step(counts, state))
    rng = np.random.default_rng(0)
    counts = [rng.poisson(rate * BIN_WIDTH, (1, NUM_UNITS)).astype(np.float32) for _ in range(8)]
    state = [model.init_state(1)]

    def call(i: int) -> None:
        preds, state[0] = step_fn(counts[i % len(counts)], state[0])
        jax.block_until_ready(preds)

    t = time.perf_counter()
    call(0)
    compile_s = time.perf_counter() - t
    return {"compile_s": compile_s, **time_calls(call, steps)}


def wiener_stream_step(filt, history: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One streaming Wiener step in place: shift ``history`` [taps, u] by one bin, insert ``counts`` [u], predict [y].

    Row ``j`` of ``history`` holds the counts of ``j`` bins ago, which is the column order of
    :func:`~possm_jax.baselines.wiener.lagged_design`, so the flattened history is one design row.
    """
    history[1:] = history[:-1]
    history[0] = counts
    return history.reshape(-1) @ filt.weights + filt.bias


def wiener_row(rate: float, steps: int, taps: int = 5) -> dict:
    """Numpy Wiener filter step (:func:`wiener_stream_step`) with ``taps`` bins of 100 units."""
    from possm_jax.baselines.wiener import WienerFilter

    rng = np.random.default_rng(0)
    filt = WienerFilter(rng.standard_normal((taps * NUM_UNITS, 2)), np.zeros(2), taps, 1.0)
    history = np.zeros((taps, NUM_UNITS))
    counts = [rng.poisson(rate * BIN_WIDTH, NUM_UNITS).astype(np.float64) for _ in range(8)]
    return {"compile_s": 0.0, **time_calls(lambda i: wiener_stream_step(filt, history, counts[i % 8]), steps)}


def offline_throughput(preset: str, batch: int, rate: float = 20.0, repeats: int = 5) -> dict:
    """Windows/s of the jitted POSSM window forward on ``batch`` 1 s windows (median of ``repeats`` calls)."""
    import jax
    from flax import nnx

    from possm_jax.config import get_preset
    from possm_jax.possm import POSSM

    forward = _jit_forward(POSSM(get_preset(preset), NUM_UNITS + 1, 2, rngs=nnx.Rngs(0)))
    window = _window(np.random.default_rng(0), spikes_per_chunk(rate), batch)
    jax.block_until_ready(forward(window))
    timing = time_calls(lambda _: jax.block_until_ready(forward(window)), repeats, warmup=1)
    return {"preset": preset, "batch": batch, "windows_per_s": batch / (timing["median_us"] * 1e-6)}


def measure(mode: str, log: Callable[[str], None] = print) -> dict:
    """Every latency row of ``mode`` (full / quick / smoke) in this process, with the current thread settings."""
    from flax import nnx

    from possm_jax.baselines.poyo import POYO, POYOConfig
    from possm_jax.config import get_preset
    from possm_jax.possm import POSSM

    presets, rates, steps, rerun, poyo_dims, offline_batches = MODES[mode]
    binned = ("gru",) if mode == "smoke" else ("gru", "s4d", "mamba")
    rows = []

    def add(model: str, family: str, rate: float, fn: Callable[..., dict], *args) -> None:
        result = {"model": model, "family": family, "rate_hz": rate, "spikes_per_chunk": spikes_per_chunk(rate)}
        result.update(fn(*args))
        rows.append(result)
        log(f"  {model:<22} {rate:>3} Hz  median {result['median_us']:9.1f} us  p99 {result['p99_us']:9.1f} us")

    rerun_steps = max(steps // 4, 10)
    for rate in rates:
        for preset in presets:
            add(preset, "possm", rate, possm_step_row, preset, rate, steps)
        for preset in rerun:
            model = POSSM(get_preset(preset), NUM_UNITS + 1, 2, rngs=nnx.Rngs(0))
            add(f"{preset}_rerun", "rerun", rate, rerun_row, model, rate, rerun_steps)
        for kind in binned:
            add(f"binned_{kind}", "binned", rate, binned_row, kind, rate, steps)
        add("wiener", "wiener", rate, wiener_row, rate, steps)
        for dim in poyo_dims:
            model = POYO(POYOConfig(dim=dim), NUM_UNITS + 1, 2, rngs=nnx.Rngs(0))
            add(f"poyo_d{dim}", "poyo", rate, rerun_row, model, rate, rerun_steps)
    offline = [offline_throughput("possm_small", b) for b in offline_batches]
    for o in offline:
        log(f"  offline {o['preset']} batch {o['batch']}: {o['windows_per_s']:.0f} windows/s")
    return {"rows": rows, "offline": offline, "streaming": measure_streaming(mode, steps, log)}


def measure_streaming(mode: str, steps: int, log: Callable[[str], None] = print, rate: float = 20) -> dict:
    """Streamer vs inner step per weight format, kernel count and part breakdown, many streams (20 Hz), and the
    speech decoder's step (:func:`experiments.bench_streamer.speech_row`)."""
    from experiments import bench_streamer

    formats, profiled, stream_counts = STREAMING_MODES[mode]
    calls = []
    for preset, weights in formats.items():
        for row in bench_streamer.streamer_rows(preset, rate, steps, weights, time_calls):
            calls.append(row)
            log(f"  {row['model']:<28} median {row['median_us']:9.1f} us  cpu {row['cpu_median_us']:9.1f} us")
    profiles = {}
    for preset in profiled:
        profiles[preset] = p = bench_streamer.step_profile(preset, rate, steps, time_calls)
        parts = "  ".join(f"{k} {p[f'{k}_us']:.0f} us ({p[f'{k}_kernels']} kernels)" for k in bench_streamer.PARTS)
        log(f"  {preset} step: {p['kernels']} kernels; {parts}")
    multi = []
    for b in stream_counts:
        multi.append(row := bench_streamer.multi_stream_row("possm_small", rate, b, max(steps // 4, 10), time_calls))
        log(f"  possm_small x{b:<4} {row['per_stream_us']:8.1f} us/stream  {row['streams_per_core']:7.0f} streams/core")
    speech = bench_streamer.speech_row(steps, time_calls)
    log(f"  {speech['model']:<28} median {speech['median_us']:9.1f} us  (256 channels, 20 ms chunks)")
    return {"calls": calls, "profile": profiles, "multi_stream": multi, "speech": speech}


def run_subprocess(mode: str, threads: str, out: str, log: Callable[[str], None] = print) -> dict:
    """Runs :func:`measure` in a child process with ``threads`` = ``"1"`` (core 0, 1 XLA thread) or ``"all"``."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "experiments.bench_latency", f"--out={out}", f"--mode={mode}"]
    if threads == "1":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {ONE_THREAD_FLAGS}".strip()
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
        cmd = ["taskset", "-c", "0", *cmd]
    elif threads != "all":
        raise ValueError(f"threads: expected '1' or 'all', got {threads!r}")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        log(f"[{threads} thread{'s' if threads == 'all' else ''}] {line.rstrip()}")
    if proc.wait() != 0:
        raise RuntimeError(f"latency benchmark ({threads} threads) failed with exit code {proc.returncode}")
    with open(out) as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON output path")
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    args = parser.parse_args(argv)
    result = measure(args.mode)
    result["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
