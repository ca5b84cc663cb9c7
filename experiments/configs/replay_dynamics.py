"""Config for leakage, adaptation and momentum in noisy-RNN replay (Casco-Rodriguez et al. 2026).

Launch (``arg`` = ``preset`` or ``preset,condition``; presets ``paper`` and ``quick``):

    python -m experiments.replay_dynamics \\
        --config=experiments/configs/replay_dynamics.py:quick --workdir=runs/replay_dynamics

Conditions, per task (``tasks``): ``baseline`` (no leak, lambda_h = 1), ``leak`` (lambda_h = 0.2), ``leak_adapt``
(+ adaptation lambda_a = 0.1, b_a = 0.5), ``leak_momentum`` (+ momentum lambda_v = 0.5) and ``leak_adapt_momentum``.
The values of lambda_a, b_a and lambda_v are ours (the paper's exact settings were not available to us).
"""

import ml_collections

from experiments.configs.replay_common import base_config, parse_arg

VARIANTS = {
    "baseline": dict(leak=1.0),
    "leak": dict(),
    "leak_adapt": dict(adapt_rate=0.1, adapt_strength=0.5),
    "leak_momentum": dict(momentum=0.5),
    "leak_adapt_momentum": dict(adapt_rate=0.1, adapt_strength=0.5, momentum=0.5),
}


def get_config(arg: str = "quick") -> ml_collections.ConfigDict:
    """Returns the config for ``arg = preset[,condition]`` (a condition is ``<task>_<variant>``).

    Raises:
        ValueError: For an unknown preset.
    """
    preset, only = parse_arg(arg)
    quick = preset == "quick"
    config = base_config(preset, only, task="triangle", quick_steps=600)
    config.tasks = ("triangle", "tmaze") if quick else ("triangle", "tmaze", "place_paths")
    config.conditions = {
        f"{task}_{variant}": ml_collections.ConfigDict(dict(task=dict(name=task), cell=cell))
        for task in config.tasks
        for variant, cell in VARIANTS.items()
    }
    return config
