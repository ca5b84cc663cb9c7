"""``python -m tests.parked_launch -m <launcher module> [flags]``: runs the launcher, parked at one point so that a test
can SIGKILL it exactly there (``tests/test_kill.py``). The point comes from the environment:

- ``PARK_AFTER_STEP=k``: the main thread stops once training step ``k`` is logged, before any save of step ``k``;
- ``PARK_COMMIT=k``: orbax's background thread stops just before it commits checkpoint step ``k``: every item is
  written into ``<k>.orbax-checkpoint-tmp``, which is not yet renamed to ``<k>``.

Once parked it writes the file named by ``PARK_MARKER`` and sleeps until it is killed. Without these variables it is
the plain launcher.
"""

import os
import runpy
import sys
import time


def _park() -> None:
    with open(os.environ["PARK_MARKER"], "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(3600)


def _park_after_step(step: int) -> None:
    from possm_jax.train.logging import RunLogger

    real = RunLogger.log

    def log(self, at, scalars, prefix=""):
        real(self, at, scalars, prefix)
        if at == step and prefix == "train/":
            _park()

    RunLogger.log = log


def _park_commit(step: int) -> None:
    from orbax.checkpoint._src.path.atomicity import AtomicRenameTemporaryPath

    real = AtomicRenameTemporaryPath.finalize

    async def finalize(self):
        if self.get_final().name == str(step):  # the step directory, not one of its items
            _park()
        await real(self)

    AtomicRenameTemporaryPath.finalize = finalize


def main() -> None:
    """Installs the park point named in the environment, then runs ``-m <module> [flags]`` as ``__main__``."""
    if "PARK_AFTER_STEP" in os.environ:
        _park_after_step(int(os.environ["PARK_AFTER_STEP"]))
    if "PARK_COMMIT" in os.environ:
        _park_commit(int(os.environ["PARK_COMMIT"]))
    if sys.argv[1:2] != ["-m"]:
        raise SystemExit("usage: python -m tests.parked_launch -m <launcher module> [flags]")
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
