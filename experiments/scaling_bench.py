r"""CPU-simulated data-parallel scaling and per-device memory of the train step (numbers for ``docs/scaling.md``).

    python -m experiments.scaling_bench --devices=1,2,4,8 --per_device_batch=4 --steps=6 --out=docs/scaling_cpu.png
    python -m experiments.scaling_bench --memory --per_device_batch=16

Throughput: windows/s per device of the jitted train step on the tiny synthetic corpus, the global batch growing
with the device count (weak scaling), compile excluded. Simulated CPU devices share the machine's cores, so this
measures the overhead of the sharded program, not a speed-up; the table is printed and plotted to ``--out``.
Memory: XLA's compiled memory analysis of one device's step (arguments = state + batch, temporaries = activations and
gradients) for every model preset.
"""

import functools
import os
import time
from collections.abc import Sequence

import jax
from absl import app, flags
from flax import nnx

from data_pipeline.pipeline import make_train_iterator
from data_pipeline.tokenize import TokenizerConfig
from possm_jax.config import get_preset, preset_names
from possm_jax.possm import POSSM
from possm_jax.train import corpus
from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import reference_lamb
from possm_jax.train.setup import init_training
from possm_jax.train.sharding import make_mesh, maybe_initialize_distributed, replicate, shard_batch

_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Simulated device counts to time.")
_PER_DEVICE = flags.DEFINE_integer("per_device_batch", 4, "Windows per device per step.")
_STEPS = flags.DEFINE_integer("steps", 6, "Timed steps per device count (after one compiling step).")
_PRESET = flags.DEFINE_string("preset", "possm_small", "Model preset for the throughput table.")
_OUT = flags.DEFINE_string("out", "runs/scaling/scaling_cpu.png", "PNG of the throughput figure.")
_MEMORY = flags.DEFINE_bool("memory", False, "Print per-device memory of every preset instead of throughput.")


def _step_and_batches(preset: str, num_devices: int, per_device: int):
    """A placed state, its jitted step, a sharded batch iterator and the rng for ``num_devices`` devices."""
    recs = corpus.select(corpus.load_corpus("", "tiny"), "all")
    units, sessions = corpus.build_vocabs(recs)
    batch_size = per_device * num_devices
    data = make_train_iterator(recs, corpus.vocab_maps(recs, units, sessions), TokenizerConfig(), batch_size, 0)
    cfg = get_preset(preset)
    mesh = make_mesh(num_devices)
    model = POSSM(cfg, len(units), len(sessions), rngs=nnx.Rngs(0))
    loss_fn = functools.partial(multitask_loss, task_names=cfg.task_names)
    _, state, step = init_training(model, reference_lamb(batch_size, 1000), loss_fn, mesh=mesh)
    batches = (shard_batch(b, mesh) for b in data)
    return state, step, batches, replicate(jax.random.key(0), mesh)


def throughput(preset: str, num_devices: int, per_device: int, steps: int) -> float:
    """Steady windows/s per device."""
    state, step, batches, rng = _step_and_batches(preset, num_devices, per_device)
    state, metrics = step(state, next(batches), rng)  # compiles
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, next(batches), rng)
    jax.block_until_ready(metrics)
    return steps * per_device / (time.perf_counter() - start)


def memory(preset: str, per_device: int) -> tuple[float, float]:
    """``(arguments MiB, temporaries MiB)`` of one device's compiled train step."""
    state, step, batches, rng = _step_and_batches(preset, 1, per_device)
    stats = step.lower(state, next(batches), rng).compile().memory_analysis()
    return stats.argument_size_in_bytes / 2**20, stats.temp_size_in_bytes / 2**20


def write_figure(rates: dict[int, float], per_device: int, preset: str, path: str) -> None:
    """Plots windows/s per device (``rates``) and in all against the simulated device count to the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = sorted(rates)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(devices, [rates[n] for n in devices], "o-", label="per device")
    # The machine's total: flat when the sharded program adds no overhead on the shared cores.
    ax.plot(devices, [rates[n] * n for n in devices], "s--", color="gray", label="all devices")
    ax.set_xscale("log", base=2)
    ax.set_xticks(devices, [str(n) for n in devices])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("simulated CPU devices (1 process)")
    ax.set_ylabel("training windows/s")
    ax.set_title(f"CPU-simulated data parallelism: {preset}, {per_device} windows/device", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str]) -> None:
    del argv
    devices = [int(d) for d in _DEVICES.value]
    maybe_initialize_distributed(num_cpu_devices=max(devices))
    if _MEMORY.value:
        print(f"| preset | arguments (MiB) | temporaries (MiB), {_PER_DEVICE.value} windows/device |")
        for preset in preset_names():
            args, temp = memory(preset, _PER_DEVICE.value)
            print(f"| {preset} | {args:.1f} | {temp:.1f} |")
        return
    print("| devices | global batch | windows/s per device |")
    rates = {}
    for n in devices:
        rates[n] = throughput(_PRESET.value, n, _PER_DEVICE.value, _STEPS.value)
        print(f"| {n} | {n * _PER_DEVICE.value} | {rates[n]:.1f} |", flush=True)
    write_figure(rates, _PER_DEVICE.value, _PRESET.value, _OUT.value)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
