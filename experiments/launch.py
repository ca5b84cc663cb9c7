"""What every launcher shares: ``--config`` / ``--workdir`` flags defined only when launched, unknown config keys
reported with the closest valid key, and user errors printed as one line (exit status 1) instead of a traceback.
"""

import sys
from collections.abc import Callable

from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

from experiments.configs.common import parse_flags
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


def launch(run: Callable[[ConfigDict, str], object], help_text: str, default_workdir: str) -> None:
    """Defines ``--config`` / ``--workdir`` (only when launched) and runs ``run(config, workdir)`` under absl."""
    config = config_flags.DEFINE_config_file("config", None, help_text, lock_config=True)
    workdir = flags.DEFINE_string("workdir", default_workdir, "Output directory (checkpoints, logs, metrics).")
    flags.mark_flags_as_required(["config"])

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        run_or_exit(lambda: run(config.value, workdir.value))

    app.run(main, flags_parser=parse_flags)
