"""Test configuration: 8 simulated CPU devices, parsed absl flags and a per-run compilation cache, set before any
backend use."""

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "PYTEST_XDIST_WORKER" not in os.environ:  # the main process: xdist workers and launched subprocesses inherit it
    # Many tests compile the same train / eval programs again (resume tests, launcher subprocesses): a persistent
    # compilation cache shared by this run's processes compiles each once. It starts empty, so CI times what a
    # user's first run would, and it is removed when the run ends.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="possm_jax_test_jit_cache_"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_default_matmul_precision", "highest")

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

import pytest  # noqa: E402

REFERENCE_FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "possm_small_seed0.npz"
"""The PyTorch reference forward pass (``shared/`` beside the checkout, see its fixtures/README.md)."""


@pytest.fixture(scope="session")
def reference_fixture() -> Path:
    """The path of the reference fixture; tests that use it are skipped where it is absent."""
    if not REFERENCE_FIXTURE.exists():
        pytest.skip(f"reference fixture not found at {REFERENCE_FIXTURE}")
    return REFERENCE_FIXTURE


HEAVY_FILES_FIRST = (
    "test_bench.py",
    "test_multiprocess.py",
    "test_loop.py",
    "test_task_launch.py",
    "test_kill.py",
    "test_finetune.py",
    "test_lora.py",
    "test_mixed_precision.py",
    "test_quickstart_notebook.py",
)
"""The files with the longest tests (1-4 minutes each on 2 cores), started first so that ``pytest -n 2 --dist
loadfile`` (``make test``) does not end with one of them running alone."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Runs :data:`HEAVY_FILES_FIRST` first, in that order; every other file keeps its place after them."""
    rank = {name: i for i, name in enumerate(HEAVY_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_unconfigure(config: pytest.Config) -> None:
    """The main process removes the run's compilation cache (workers share it, so they leave it)."""
    if (
        "PYTEST_XDIST_WORKER" not in os.environ
        and "possm_jax_test_jit_cache_" in os.environ["JAX_COMPILATION_CACHE_DIR"]
    ):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
