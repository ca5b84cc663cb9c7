"""LR and β1 schedules against closed forms (torch OneCycleLR with div_factor=1, pct_start=0.5, cos anneal)."""

import math

import numpy as np
import pytest

from possm_jax.train.schedules import cycled_b1, flat_cosine_lr, peak_learning_rate


def one_cycle_closed_form(step, total, lo_start, mid, end):
    """Value of a two-phase cosine one-cycle curve, written out with math.cos (phase 1 ends at total/2 - 1)."""
    end1, end2 = total / 2 - 1, total - 1
    if step <= end1:
        frac, a, b = step / end1, lo_start, mid
    else:
        frac, a, b = min((step - end1) / (end2 - end1), 1.0), mid, end
    return b + (a - b) / 2 * (math.cos(math.pi * frac) + 1)


def test_peak_scales_with_global_batch():
    assert peak_learning_rate(128) == pytest.approx(4e-3)
    assert peak_learning_rate(8) == pytest.approx(2.5e-4)
    with pytest.raises(ValueError, match="global_batch"):
        peak_learning_rate(0)


@pytest.mark.parametrize("total", [10, 101, 1000])
def test_lr_flat_then_cosine(total):
    peak = 4e-3
    sched = flat_cosine_lr(peak, total)
    steps = np.arange(total + 5)
    got = np.asarray([float(sched(s)) for s in steps])
    want = [one_cycle_closed_form(min(s, total - 1), total, peak, peak, peak / 1e4) for s in steps]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[0] == pytest.approx(peak) and got[total - 1] == pytest.approx(peak / 1e4)
    assert np.all(got[: total // 2] == pytest.approx(peak))  # flat half


def test_b1_cycles_down_and_back():
    total = 200
    sched = cycled_b1(total)
    got = np.asarray([float(sched(s)) for s in range(total)])
    want = [one_cycle_closed_form(s, total, 0.95, 0.85, 0.95) for s in range(total)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[0] == pytest.approx(0.95)
    assert got[total // 2 - 1] == pytest.approx(0.85)
    assert got[-1] == pytest.approx(0.95)
    assert got.min() == pytest.approx(0.85)


def test_bad_arguments():
    with pytest.raises(ValueError, match="total_steps"):
        flat_cosine_lr(1.0, 1)(0)
    with pytest.raises(ValueError, match="pct_flat"):
        cycled_b1(10, pct_flat=1.5)(0)
