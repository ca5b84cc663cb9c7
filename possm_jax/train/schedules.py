"""Learning-rate and β1 schedules (docs/training.md).

The reference trains with a one-cycle schedule whose warm-up is flat: the learning rate stays at its peak for the
first ``pct_flat`` of the steps and then follows a half cosine down to ``peak / final_div``. β1 "cycles 0.95 → 0.85 →
0.95 over the same span": in one-cycle training momentum moves opposite to the learning rate, so we read it as a half
cosine from ``b1_max`` down to ``b1_min`` over the first phase and a half cosine back up to ``b1_max`` over the second.
Phase boundaries follow torch's ``OneCycleLR`` (phase 1 ends at step ``pct_flat * total - 1``, phase 2 at
``total - 1``), so the last step runs at exactly ``peak / final_div`` and ``b1_max``. Steps past the end hold the final
values.
"""

import jax.numpy as jnp
import optax

from possm_jax.types import Array

LR_PER_EXAMPLE = 3.125e-5
"""Peak learning rate per example of global batch (4e-3 at batch 128)."""


def peak_learning_rate(global_batch: int, per_example: float = LR_PER_EXAMPLE) -> float:
    """Linear scaling: ``per_example * global_batch`` (the global batch counts every device and host)."""
    if global_batch < 1:
        raise ValueError(f"global_batch must be >= 1, got {global_batch}")
    return per_example * global_batch


def cosine_interp(start: float | Array, end: float | Array, frac: Array) -> Array:
    """Half-cosine interpolation from ``start`` (frac = 0) to ``end`` (frac = 1); frac is clipped to [0, 1]."""
    frac = jnp.clip(frac, 0.0, 1.0)
    # (1 + cos(pi f)) / 2 written as cos^2(pi f / 2): no cancellation near f = 1, where the LR is ~peak / 1e4.
    return end + (start - end) * jnp.square(jnp.cos(0.5 * jnp.pi * frac))


def _phase_fractions(step: Array, total_steps: int, pct_flat: float) -> tuple[Array, Array]:
    """Progress (0→1) through phase 1 and phase 2 at ``step``."""
    if total_steps < 2:
        raise ValueError(f"total_steps must be >= 2, got {total_steps}")
    if not 0.0 < pct_flat < 1.0:
        raise ValueError(f"pct_flat must be in (0, 1), got {pct_flat}")
    end1 = max(pct_flat * total_steps - 1.0, 0.0)
    end2 = total_steps - 1.0
    step = jnp.asarray(step, jnp.float32)
    frac1 = step / end1 if end1 > 0 else jnp.ones_like(step)
    frac2 = (step - end1) / (end2 - end1)
    return frac1, frac2


def flat_cosine_lr(peak: float, total_steps: int, pct_flat: float = 0.5, final_div: float = 1e4) -> optax.Schedule:
    """Learning rate: ``peak`` for the first ``pct_flat`` of steps, then a half cosine to ``peak / final_div``."""

    def schedule(step: Array) -> Array:
        frac1, frac2 = _phase_fractions(step, total_steps, pct_flat)
        return jnp.where(frac1 <= 1.0, peak, cosine_interp(peak, peak / final_div, frac2))

    return schedule


def cycled_b1(total_steps: int, pct_flat: float = 0.5, b1_max: float = 0.95, b1_min: float = 0.85) -> optax.Schedule:
    """β1: half cosine ``b1_max → b1_min`` over phase 1, then ``b1_min → b1_max`` over phase 2."""

    def schedule(step: Array) -> Array:
        frac1, frac2 = _phase_fractions(step, total_steps, pct_flat)
        return jnp.where(frac1 <= 1.0, cosine_interp(b1_max, b1_min, frac1), cosine_interp(b1_min, b1_max, frac2))

    return schedule
