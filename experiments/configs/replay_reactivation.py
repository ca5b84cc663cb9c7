"""Config for offline reactivation in noisy path-integrating RNNs (Krishna et al., ICLR 2024).

Launch (``arg`` = ``preset`` or ``preset,condition``; presets ``paper`` and ``quick``):

    python -m experiments.replay_reactivation \\
        --config=experiments/configs/replay_reactivation.py:quick --workdir=runs/replay_reactivation

Conditions: spatial noisy / noise-free x unbiased / biased, an untrained spatial network, and the head-direction
task (noisy, unbiased / biased / untrained; ``paper`` preset only).
"""

import ml_collections

from experiments.configs.replay_common import base_config, parse_arg


def _condition(**blocks) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(blocks)


def get_config(arg: str = "quick") -> ml_collections.ConfigDict:
    """Returns the config for ``arg = preset[,condition]``.

    Raises:
        ValueError: For an unknown preset.
    """
    preset, only = parse_arg(arg)
    quick = preset == "quick"
    config = base_config(preset, only, task="spatial", quick_steps=1000)

    hd_cell = dict(leak=0.5, noise_sd=0.1)
    config.conditions = dict(
        noisy_unbiased=_condition(),
        noisy_biased=_condition(task=dict(bias=0.05)),
        noisefree_unbiased=_condition(cell=dict(noise_sd=0.0)),
        noisefree_biased=_condition(cell=dict(noise_sd=0.0), task=dict(bias=0.05)),
        untrained=_condition(train=dict(steps=0)),
    )
    if quick:
        # Head direction needs far more steps than the quick budget (see docs/replay.md), so only `paper` runs it.
        return config
    config.conditions.update(
        hd_unbiased=_condition(
            hidden_dim=128,
            cell=hd_cell,
            task=dict(name="head_direction"),
            train=dict(steps=20000),
            quiescence=dict(reference_sd=0.1),
        ),
        hd_biased=_condition(
            hidden_dim=128,
            cell=hd_cell,
            task=dict(name="head_direction", bias=0.05),
            train=dict(steps=20000),
            quiescence=dict(reference_sd=0.1),
        ),
        hd_untrained=_condition(
            hidden_dim=128,
            cell=hd_cell,
            task=dict(name="head_direction"),
            train=dict(steps=0),
            quiescence=dict(reference_sd=0.1),
        ),
    )
    return config
