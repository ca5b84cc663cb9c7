"""What every launcher shares: ``--config`` / ``--workdir`` flags defined only when launched, unknown config keys
reported with the closest valid key, user errors printed as one line (exit status 1) instead of a traceback, and
multi-process setup before JAX starts: a cluster (SLURM, Open MPI, ``JAX_COORDINATOR_ADDRESS``) is detected, or a job
is started by hand with ``--coordinator_address=localhost:PORT --num_processes=N --process_id=i`` (one launch per
id); ``--num_cpu_devices`` simulates devices on CPU. Recipes: ``docs/scaling.md``.

The console shows progress bars, warnings and a short summary at the end; absl INFO lines (orbax writes hundreds per
run) come back with absl's ``--verbosity=0`` (``-v 0``; ``1`` adds debug lines).
"""

import logging as py_logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

from experiments.configs.common import parse_flags
from possm_jax.train.sharding import maybe_initialize_distributed
from possm_jax.train.step import NonFiniteLossError

USER_ERRORS = (ValueError, NonFiniteLossError)
"""Errors caused by input or training dynamics: reported in one line (DataError, CheckpointError... are ValueErrors)."""


def run_or_exit(fn: Callable[[], object]) -> object:
    """Runs ``fn``; a user error prints ``error: <message>`` on one line and exits with status 1."""
    try:
        return fn()
    except USER_ERRORS as e:
        logging.debug("details", exc_info=True)
        sys.stderr.write(f"error: {' '.join(str(e).split())}\n")
        sys.exit(1)


class _HideOrbaxWarnings(py_logging.Filter):
    """Drops orbax's warnings (read-only managers, saves without metrics): notes on its internals, not on the run."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.ERROR or f"{os.sep}orbax{os.sep}" not in record.pathname


def quiet_logging() -> None:
    """Hides absl INFO lines and orbax's warnings unless ``--verbosity`` / ``-v`` is on the command line."""
    if flags.FLAGS["verbosity"].present:
        return
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_logger().addFilter(_HideOrbaxWarnings())


def summary_lines(result: Mapping[str, Any], workdir: str) -> list[str]:
    """The end-of-run summary: the step reached, R² of each evaluated split, where metrics and logs are."""
    step = result.get("step")
    if result.get("preempted"):
        lines = [f"stopped at step {step} (signal); run the same command again to resume"]
    else:
        wall = result.get("wall_seconds")
        lines = [f"step {step}" + (f", {wall:.0f} s" if wall is not None else "")] if step is not None else []
    for split, value in result.items():
        if isinstance(value, Mapping) and "r2_mean" in value:
            strict = value.get("strict_r2_mean")
            line = f"{split} R² {value['r2_mean']:.3f} ± {value.get('r2_sd', float('nan')):.3f}"
            lines.append(line + (f", strictly causal {strict:.3f}" if strict is not None else ""))
    if os.path.exists(os.path.join(workdir, "metrics.json")):
        lines.append(f"metrics: {os.path.join(workdir, 'metrics.json')}")
    if os.path.isdir(os.path.join(workdir, "tb")):
        lines.append(f"TensorBoard: tensorboard --logdir={os.path.join(workdir, 'tb')}")
    return lines


def launch(run: Callable[[ConfigDict, str], object], help_text: str, default_workdir: str) -> None:
    """Defines ``--config`` / ``--workdir`` (only when launched) and runs ``run(config, workdir)`` under absl."""
    config = config_flags.DEFINE_config_file("config", None, help_text, lock_config=True)
    workdir = flags.DEFINE_string("workdir", default_workdir, "Output directory (checkpoints, logs, metrics).")
    flags.mark_flags_as_required(["config"])
    coordinator = flags.DEFINE_string("coordinator_address", "", "host:port of process 0 of a hand-started job.")
    num_processes = flags.DEFINE_integer("num_processes", 1, "Processes in a hand-started job.")
    process_id = flags.DEFINE_integer("process_id", 0, "This process's id in a hand-started job (0 .. N-1).")
    cpu_devices = flags.DEFINE_integer("num_cpu_devices", 0, "Simulated CPU devices per process (0: one).")

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        quiet_logging()
        distributed = dict(
            coordinator_address=coordinator.value,
            num_processes=num_processes.value,
            process_id=process_id.value,
            num_cpu_devices=cpu_devices.value,
        )
        run_or_exit(lambda: maybe_initialize_distributed(**distributed))  # before anything touches the JAX backend
        result = run_or_exit(lambda: run(config.value, workdir.value))
        if isinstance(result, Mapping) and jax.process_index() == 0:
            print("\n".join(summary_lines(result, workdir.value)))

    app.run(main, flags_parser=parse_flags)
