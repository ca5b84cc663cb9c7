"""Streaming-path latency rows of the latency bench: public Streamer vs inner step, weight formats, kernel count and
per-part breakdown of one step, and many streams in one step.

Run inside :mod:`experiments.bench_latency`'s child process (its thread settings apply). Chunks carry ``rate × 100
units × 50 ms`` spikes and 5 queries, as the other rows; latencies are medians of per-call wall times
(``time_calls``), with the CPU time of the process next to them because the bench machine may be shared.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

NUM_UNITS = 100
QUERIES = 5
BIN_WIDTH = 0.05
CHUNK_BUDGET_US = BIN_WIDTH * 1e6
PARTS = ("encoder", "backbone", "decoder")
SKIPPED_HLO_OPS = ("parameter", "constant", "bitcast", "tuple", "get-tuple-element")


def _model(preset: str):
    from flax import nnx

    from possm_jax.config import get_preset
    from possm_jax.possm import POSSM

    return POSSM(get_preset(preset), NUM_UNITS + 1, 2, rngs=nnx.Rngs(0))


def host_chunks(rate: float, streams: int = 1, count: int = 8, seed: int = 0) -> list[tuple[dict, dict]]:
    """``count`` unpadded host chunks for ``streams`` streams; each stream draws a Poisson spike count."""
    from possm_jax.streaming import stack_streams

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        per_stream = []
        for _ in range(streams):
            n = int(rng.poisson(rate * NUM_UNITS * BIN_WIDTH)) if streams > 1 else round(rate * NUM_UNITS * BIN_WIDTH)
            chunk = {
                "spike_unit": rng.integers(1, NUM_UNITS + 1, (1, n)).astype(np.int32),
                "spike_time": np.sort(rng.uniform(0, BIN_WIDTH, (1, n))).astype(np.float32),
                "spike_mask": np.ones((1, n), bool),
            }
            queries = {
                "session": np.array([1], np.int32),
                "query_time": ((np.arange(QUERIES) + 1) * BIN_WIDTH / (QUERIES + 1))[None].astype(np.float32),
                "query_task": np.zeros((1, QUERIES), np.int32),
            }
            per_stream.append((chunk, queries))
        chunk, queries, _ = stack_streams(*zip(*per_stream, strict=True))
        out.append((chunk, queries))
    return out


def streamer_rows(preset: str, rate: float, steps: int, weights: tuple[str, ...], time_calls: Callable) -> list:
    """Public :class:`Streamer` call (check, pack, step, fetch) and its inner executable, per weight format."""
    model = _model(preset)
    chunks = host_chunks(rate)
    return [row for fmt in weights for row in _format_rows(model, preset, fmt, chunks, steps, time_calls)]


def _format_rows(model, preset: str, fmt: str, chunks: list, steps: int, time_calls: Callable) -> list[dict]:
    from data_pipeline.buckets import next_pow2
    from possm_jax.stream_inputs import pack_inputs
    from possm_jax.streaming import MIN_QUERY_BUCKET, MIN_SPIKE_BUCKET, Streamer

    streamer = Streamer(model, weights=fmt)
    state = streamer.init(1)
    sb, qb = next_pow2(chunks[0][0]["spike_unit"].shape[1], MIN_SPIKE_BUCKET), MIN_QUERY_BUCKET  # same for all
    exe = streamer.executable(1, sb, qb)  # the one bucket these chunks use, not every bucket below it
    packed = [pack_inputs(c, q, sb, qb, False) for c, q in chunks]
    inner = time_calls(lambda i: np.asarray(exe(state, packed[i % len(packed)])[1]), steps)
    public = time_calls(lambda i: streamer(state, *chunks[i % len(chunks)]), steps)
    return [
        {"model": f"{preset}_{fmt}_inner", "weights": fmt, "part": "inner", **inner},
        {"model": f"{preset}_{fmt}_streamer", "weights": fmt, "part": "streamer", **public},
    ]


def kernel_count(compiled) -> int:
    """Kernels (fusions, dots, custom calls, ...) that one call of a compiled XLA executable launches."""
    text = compiled.as_text()
    entry = text[text.index("\nENTRY") :]
    ops = re.findall(r"^\s*(?:ROOT )?\S+ = \S+ ([\w-]+)\(", entry, re.M)
    return sum(op not in SKIPPED_HLO_OPS for op in ops)


def step_profile(preset: str, rate: float, steps: int, time_calls: Callable) -> dict:
    """Kernel count of the whole step and median time of its encoder, backbone and decoder parts (each jitted alone
    with the weights as constants, on the same inputs)."""
    import jax
    from flax import nnx

    from possm_jax.stream_inputs import pad_inputs
    from possm_jax.streaming import Streamer

    model = _model(preset)
    chunk, queries = host_chunks(rate, count=1)[0]
    streamer = Streamer(model)
    streamer(streamer.init(1), chunk, queries)  # compiles the one bucket this chunk uses
    b, sb, qb = streamer.compiled_shapes[0]
    chunk, queries = pad_inputs(chunk, queries, sb, qb)
    graphdef, params = nnx.split(model)
    tables = jax.jit(model.stream_tables)()
    state = model.init_stream(1)
    parts = {
        "encoder": (lambda c: nnx.merge(graphdef, params).stream_encode(c, tables), (chunk,)),
        "backbone": (lambda x, s: nnx.merge(graphdef, params).backbone.step(x, s), None),
        "decoder": (lambda s, y, q: nnx.merge(graphdef, params).stream_decode(s, y, q), None),
    }
    latent = jax.jit(parts["encoder"][0])(chunk)
    y, _ = jax.jit(parts["backbone"][0])(latent, state.backbone)
    parts["backbone"] = (parts["backbone"][0], (latent, state.backbone))
    parts["decoder"] = (parts["decoder"][0], (state, y, queries))
    out = {"kernels": kernel_count(streamer.executable(b, sb, qb))}
    for name, (fn, args) in parts.items():
        compiled = jax.jit(fn).lower(*args).compile()
        out[f"{name}_kernels"] = kernel_count(compiled)
        out[f"{name}_us"] = time_calls(lambda _, c=compiled, a=args: jax.block_until_ready(c(*a)), steps)["median_us"]
    return out


def multi_stream_row(preset: str, rate: float, streams: int, steps: int, time_calls: Callable) -> dict:
    """``streams`` independent streams (Poisson spike counts, padded together) through one Streamer call."""
    from possm_jax.streaming import Streamer

    streamer = Streamer(_model(preset))
    chunks = host_chunks(rate, streams, seed=streams)
    state = streamer.init(streams)  # time_calls' warm-up calls compile the buckets these chunks use
    timing = time_calls(lambda i: streamer(state, *chunks[i % len(chunks)]), steps)
    per_stream = timing["median_us"] / streams
    return {
        "model": f"{preset}_x{streams}",
        "streams": streams,
        **timing,
        "per_stream_us": per_stream,
        "streams_per_core": CHUNK_BUDGET_US / per_stream,
    }


def speech_chunks(count: int = 8, seed: int = 0) -> list[tuple[dict, dict]]:
    """``count`` host chunks of the speech task: Poisson counts of the synthetic speech array's channels (256 at
    their 10 Hz median rate) in one 20 ms bin, as binned tokens (:func:`data_pipeline.binned_tokens.tokens`: about
    46 per chunk), and one phoneme query at the bin's end."""
    from data_pipeline import binned_tokens as bt
    from data_pipeline.synth import speech as synth_speech
    from possm_jax.tasks import speech

    channels, bin_width = synth_speech.CONFIG.channels, speech.SpeechConfig().bin_width
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        counts = rng.poisson(channels.median_rate * bin_width, channels.num_channels)
        fired = np.flatnonzero(counts)
        tokens = bt.tokens(
            np.zeros(len(fired)), fired, counts[fired], np.arange(1, channels.num_channels + 1), bin_width
        )
        chunk = {k: tokens[k][None] for k in ("spike_unit", "spike_time", "spike_value", "spike_mask")}
        queries = {
            "session": np.array([1], np.int32),
            "query_time": np.full((1, 1), bt.query_offset(bin_width), np.float32),
            "query_task": np.zeros((1, 1), np.int32),  # the phoneme readout is the model's first task
        }
        out.append((chunk, queries))
    return out


def speech_row(steps: int, time_calls: Callable) -> dict:
    """The speech decoder's streaming step (``possm_small`` on 256 binned channels, 20 ms chunks, phoneme logits)
    through the public :class:`Streamer` call: the real-time cost per 20 ms of attempted speech."""
    from flax import nnx

    from data_pipeline.synth import speech as synth_speech
    from possm_jax.possm import POSSM
    from possm_jax.streaming import Streamer
    from possm_jax.tasks import speech

    channels = synth_speech.CONFIG.channels.num_channels
    cfg = speech.SpeechConfig(num_channels=channels)
    model = POSSM(speech.model_config(cfg), channels + 1, 2, rngs=nnx.Rngs(0))
    streamer = Streamer(model)
    chunks = speech_chunks()
    state = streamer.init(1)  # time_calls' warm-up calls compile the buckets these chunks use
    timing = time_calls(lambda i: streamer(state, *chunks[i % len(chunks)]), steps)
    return {"model": "possm_small_speech", "channels": channels, "chunk_ms": cfg.bin_width * 1e3, **timing}
