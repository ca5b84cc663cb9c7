r"""Where a pretraining step's time goes: per-phase times, XLA's cost analysis and a TensorBoard trace.

Usage::

  python -m experiments.profile_train --out=runs/profile [--presets=possm_small,possm,possm_small_s4d] \
      [--batch_size=64] [--steps=10] [--trace]

For each preset, on the packed batches ``make bench`` trains on (one centre-out session, ``possm_small``'s defaults
otherwise), the step is cut into the phases of the model (:func:`phase_functions`): host→device transfer of a
batch, the encoder, the backbone scan and the decoder with the loss, each forward alone and forward + backward
(the backward time is the difference), and the optimizer update. Each phase is compiled on its own, so XLA cannot
fuse across phase boundaries and the phases sum to a little more than the whole step; the whole jitted train step
is timed beside them. Every row carries XLA's cost analysis of its compiled program (FLOPs and bytes accessed) and
the GFLOP/s it achieves. ``--trace`` records three whole steps with ``jax.profiler`` under ``<out>/trace``: open it
with ``tensorboard --logdir=<out>/trace`` (profile plugin) to see the XLA ops by time.

Writes ``profile.json`` (with the machine) and ``profile.md`` (one table per preset and a summary of windows/s and
compile time per preset) under ``--out``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import nnx

from experiments import bench
from possm_jax.config import get_preset
from possm_jax.possm import POSSM
from possm_jax.train.loss import multitask_loss
from possm_jax.train.optim import reference_lamb
from possm_jax.train.setup import init_training
from possm_jax.train.step import train_step
from possm_jax.xla_options import train_compiler_options

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "runs/profile", "Output folder.")
flags.DEFINE_list("presets", ["possm_small"], "Model presets to profile.")
flags.DEFINE_integer("batch_size", 64, "Windows per batch.")
flags.DEFINE_integer("steps", 10, "Timed calls per phase (the median is reported).")
flags.DEFINE_bool("trace", False, "Record a jax.profiler trace of three whole steps under <out>/trace.")

PHASE_HEADER = "| phase | median ms | % of step | GFLOP | GB accessed | GFLOP/s |"


def phase_functions(model: POSSM, tx: optax.GradientTransformation, loss_fn: Callable, batch: Mapping) -> dict:
    """The phases of one train step of ``model`` on the device batch ``batch``: ``{name: (jitted fn, args)}``.

    ``encoder`` / ``backbone`` / ``decoder + loss`` run forward; the ``… fwd+bwd`` phases also take the gradient
    with respect to the parameters (and to the phase's input, which the phase before needs), given a fixed
    cotangent; ``optimizer`` is the update of the parameters from a gradient. Chained, the forward phases give the
    model's loss (the test checks it against the model's own forward).
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def merged(p):
        return nnx.merge(graphdef, p, rest)

    def encode(p, b):
        return merged(p).encode(b)

    def backbone(p, latents):
        m = merged(p)
        return m.backbone(latents, m.backbone.init_state(latents.shape[0]))[0]

    def head(p, context, b):
        m = merged(p)
        return loss_fn(m.decoder.readout(m.decoder.attend(*m.decoder_inputs(b, context))), b)[0]

    jit = functools.partial(jax.jit, compiler_options=train_compiler_options())
    latents = jit(encode)(params, batch)
    context = jit(backbone)(params, latents)
    key_l, key_c = jax.random.split(jax.random.key(0))
    cot_latents = jax.random.normal(key_l, latents.shape, latents.dtype)
    cot_context = jax.random.normal(key_c, context.shape, context.dtype)
    grads = jax.tree.map(jnp.ones_like, params)

    def encode_bwd(p, b, cot):
        return jax.grad(lambda q: jnp.vdot(encode(q, b), cot))(p)

    def backbone_bwd(p, x, cot):
        return jax.grad(lambda q, y: jnp.vdot(backbone(q, y), cot), argnums=(0, 1))(p, x)

    def update(g, opt_state, p):
        updates, opt_state = tx.update(g, opt_state, p)
        return optax.apply_updates(p, updates), opt_state

    return {
        "encoder fwd": (jit(encode), (params, batch)),
        "encoder fwd+bwd": (jit(encode_bwd), (params, batch, cot_latents)),
        "backbone fwd": (jit(backbone), (params, latents)),
        "backbone fwd+bwd": (jit(backbone_bwd), (params, latents, cot_context)),
        "decoder + loss fwd": (jit(head), (params, context, batch)),
        "decoder + loss fwd+bwd": (jit(jax.grad(head, argnums=(0, 1))), (params, context, batch)),
        "optimizer": (jit(update), (grads, tx.init(params), params)),
    }


def _cost(compiled) -> dict[str, float]:
    """FLOPs and bytes accessed from XLA's cost analysis of a compiled program (0 where XLA gives none)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else (cost or {})
    return {"gflop": float(cost.get("flops", 0.0)) / 1e9, "gbytes": float(cost.get("bytes accessed", 0.0)) / 1e9}


def time_phase(fn: Callable, args: tuple, steps: int) -> dict[str, float]:
    """Compile time, median / p90 call time and the cost analysis of ``fn(*args)``."""
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    ms = float(np.median(times) * 1e3)
    cost = _cost(compiled)
    return {"ms": ms, "p90_ms": float(np.percentile(times, 90) * 1e3), "compile_s": compile_s, **cost,
            "gflop_per_s": cost["gflop"] / (ms / 1e3) if ms > 0 else 0.0}  # fmt: skip


def time_transfer(batch: Mapping[str, np.ndarray], steps: int) -> dict[str, float]:
    """Median time of putting a host batch on the device."""
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        jax.block_until_ready(jax.device_put(dict(batch)))
        times.append(time.perf_counter() - t)
    nbytes = sum(np.asarray(v).nbytes for v in batch.values())
    return {"ms": float(np.median(times[1:]) * 1e3), "gbytes": nbytes / 1e9}


def profile_preset(preset: str, batch_size: int, steps: int, trace_dir: str | None = None) -> dict[str, Any]:
    """The phase table and whole-step figures of ``preset`` (module docstring)."""
    units, _, packed = bench.training_batches(batch_size)
    batch = {k: jnp.asarray(v) for k, v in packed[0].items()}
    model = POSSM(get_preset(preset), units + 1, 2, rngs=nnx.Rngs(0))
    loss_fn = functools.partial(multitask_loss, task_names=model.config.task_names)
    tx = reference_lamb(batch_size, 1000)
    phases = {"host→device batch": time_transfer(packed[0], steps)}
    for name, (fn, args) in phase_functions(model, tx, loss_fn, batch).items():
        phases[name] = time_phase(fn, args, steps)
    graphdef, state, step_fn = init_training(model, tx, loss_fn, donate=False)
    whole = time_phase(step_fn, (state, batch, jax.random.key(0)), steps)
    # The same step compiled with XLA's default fusions, for the before/after of possm_jax.xla_options; where no
    # options are passed (not CPU, or the user's XLA_FLAGS set them) the step already is that program.
    options = train_compiler_options()
    if options is None:
        default = whole
    else:
        default_fn = jax.jit(functools.partial(train_step, graphdef=graphdef, tx=tx, loss_fn=loss_fn))
        default = time_phase(default_fn, (state, batch, jax.random.key(0)), steps)
    if trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(3):
                jax.block_until_ready(step_fn(state, batch, jax.random.key(0)))
    parts = ["host→device batch", "encoder fwd+bwd", "backbone fwd+bwd", "decoder + loss fwd+bwd", "optimizer"]
    return {
        "preset": preset,
        "batch_size": batch_size,
        "spikes_packed_per_window": int(batch["spike_mask"].size // batch_size),
        "phases": phases,
        "phases_sum_ms": float(sum(phases[p]["ms"] for p in parts)),
        "step": whole,
        "windows_per_s": batch_size / (whole["ms"] / 1e3),
        "compiler_options": options,
        "step_default_fusions": default,
        "windows_per_s_default_fusions": batch_size / (default["ms"] / 1e3),
    }


def markdown(results: Mapping[str, Any]) -> str:
    """``profile.md``: a summary row per preset, then each preset's phase table."""
    m = results["machine"]
    lines = [
        "# Training step profile",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, JAX {m['jax']} ({m['jax_backend']}).",
        f"Command: `{results['command']}`.",
        "",
        "| preset | batch | step ms | windows/s | compile s | GFLOP / step | GFLOP/s | windows/s, default fusions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["presets"]:
        s = r["step"]
        lines.append(
            f"| {r['preset']} | {r['batch_size']} | {s['ms']:.1f} | {r['windows_per_s']:.0f} | {s['compile_s']:.1f} "
            f"| {s['gflop']:.2f} | {s['gflop_per_s']:.1f} | {r['windows_per_s_default_fusions']:.0f} |"
        )
    for r in results["presets"]:
        step_ms = r["step"]["ms"]
        lines += ["", f"## {r['preset']}, batch {r['batch_size']}", "", PHASE_HEADER, "|---|---|---|---|---|---|"]
        for name, p in [*r["phases"].items(), ("whole train step", r["step"])]:
            gflop = f"{p['gflop']:.3f}" if "gflop" in p else ""
            rate = f"{p['gflop_per_s']:.1f}" if "gflop_per_s" in p else ""
            lines.append(
                f"| {name} | {p['ms']:.2f} | {100 * p['ms'] / step_ms:.0f} % | {gflop} | {p['gbytes']:.3f} | {rate} |"
            )
        lines.append(f"| sum of the transfer, fwd+bwd and optimizer rows | {r['phases_sum_ms']:.2f} | "
                     f"{100 * r['phases_sum_ms'] / step_ms:.0f} % | | | |")  # fmt: skip
    return "\n".join(lines) + "\n"


def run(out: str, presets: list[str], batch_size: int, steps: int, trace: bool, log=print) -> dict[str, Any]:
    """Profiles every preset and writes ``profile.json`` and ``profile.md`` under ``out``."""
    os.makedirs(out, exist_ok=True)
    rows = []
    for i, preset in enumerate(presets):
        t = time.perf_counter()
        trace_dir = os.path.join(out, "trace", preset) if trace else None
        rows.append(profile_preset(preset, batch_size, steps, trace_dir))
        log(f"[{i + 1}/{len(presets)}] {preset}: {rows[-1]['windows_per_s']:.0f} windows/s, "
            f"{time.perf_counter() - t:.0f} s")  # fmt: skip
    command = f"python -m experiments.profile_train --presets={','.join(presets)} --batch_size={batch_size}"
    results = {"machine": bench.machine_info(), "command": command, "presets": rows}
    with open(os.path.join(out, "profile.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out, "profile.md"), "w", encoding="utf-8") as f:
        f.write(markdown(results))
    return results


def main(argv: list[str]) -> None:
    del argv
    run(FLAGS.out, FLAGS.presets, FLAGS.batch_size, FLAGS.steps, FLAGS.trace)


if __name__ == "__main__":
    app.run(main)
