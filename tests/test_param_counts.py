"""Parameter counts of the presets (docs/model.md), without the unit / session tables.

GRU presets: exact counts from closed-form formulas written here independently of the model code. S4D / Mamba:
within 15 % of the paper's totals. Built with ``nnx.eval_shape`` so no weights are materialised.
"""

import pytest
from flax import nnx

from possm_jax.config import get_preset
from possm_jax.possm import POSSM, count_params

HEAD = 64


def _ffn(d: int) -> int:
    return 2 * d + (d * 8 * d + 8 * d) + (4 * d * d + d)  # LN, Linear d->8d, Linear 4d->d


def _cross_attention(d: int, ctx: int) -> int:
    return 2 * d + 2 * ctx + d * HEAD + ctx * 2 * HEAD + HEAD * d + d  # LNs, W_q, W_kv, W_o + b_o


def _gru(i: int, h: int, layers: int) -> int:
    first = 3 * h * i + 3 * h * h + 6 * h
    return first + (layers - 1) * (3 * h * h * 2 + 6 * h)


def _possm_gru(d: int, h: int, layers: int, task_dims: list[int]) -> int:
    encoder = d + d + _cross_attention(d, d) + _ffn(d)  # token type, 1 latent
    decoder = len(task_dims) * d + _cross_attention(d, h) + _ffn(d) + sum(d * y + y for y in task_dims)
    return encoder + _gru(d, h, layers) + decoder


def _count(name: str, **overrides) -> int:
    cfg = get_preset(name, **overrides)
    return count_params(nnx.eval_shape(lambda: POSSM(cfg, num_units=50, num_sessions=4, rngs=nnx.Rngs(0))))


@pytest.mark.parametrize(
    ("name", "d", "h", "layers", "paper"),
    [("possm_small", 64, 256, 1, 0.41e6), ("possm", 256, 512, 4, 7.66e6)],
)
def test_gru_presets_exact(name, d, h, layers, paper):
    expected = _possm_gru(d, h, layers, [2])
    assert _count(name) == expected
    assert round(expected, -4) == paper  # paper core counts (docs/model.md), given to 0.01 M


def test_readouts_only_for_configured_tasks():
    tasks = {"cursor_velocity_2d": 2, "handwriting": 31}
    assert _count("possm_small", tasks=tasks) == _possm_gru(64, 256, 1, [2, 31])


@pytest.mark.parametrize(
    ("name", "paper"),
    [("possm_small_s4d", 0.41e6), ("possm_s4d", 4.56e6), ("possm_small_mamba", 0.68e6), ("possm_mamba", 8.96e6)],
)
def test_ssm_presets_near_paper(name, paper):
    assert abs(_count(name) - paper) / paper <= 0.15
