"""Test configuration: 8 simulated CPU devices and parsed absl flags, set before any backend use."""

import os
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
