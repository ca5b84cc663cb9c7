"""Config for leakage, adaptation and momentum in noisy-RNN replay (Casco-Rodriguez et al., SPEC 9.2).

Launch (``arg`` = ``preset`` or ``preset,condition``; presets ``paper`` and ``quick``):

    python -m experiments.replay_dynamics \\
        --config=experiments/configs/replay_dynamics.py:quick --workdir=runs/replay_dynamics

Conditions, per task (``tasks``): ``baseline`` (no leak, lambda_h = 1), ``leak`` (lambda_h = 0.2), ``leak_adapt``
(+ adaptation lambda_a = 0.1, b_a = 0.5), ``leak_momentum`` (+ momentum lambda_v = 0.5) and ``leak_adapt_momentum``.
The values of lambda_a, b_a and lambda_v are ours (the paper's exact settings were not available to us).
"""

import ml_collections

PRESETS = ("paper", "quick")
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
    preset, _, only = arg.partition(",")
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} unknown; use one of {PRESETS} (optionally ',<condition>').")
    quick = preset == "quick"
    config = ml_collections.ConfigDict()
    config.preset = preset
    config.only = only
    config.seed = 0
    config.tasks = ("triangle", "tmaze") if quick else ("triangle", "tmaze", "place_paths")
    config.hidden_dim = 128 if quick else 512
    config.cell = dict(
        kind="rnn", leak=0.2, adapt_rate=0.0, adapt_strength=0.0, momentum=1.0, noise_sd=0.01, noise_kind="gaussian"
    )
    config.task = dict(
        name="triangle",
        num_cells=256 if quick else 512,
        sigma=0.2,
        dog_surround=0.0,
        bias=0.0,
        concentration=4.0,
        code_seed=0,
    )
    config.train = dict(
        steps=600 if quick else 2500,
        batch_size=100 if quick else 200,
        seq_len=100,
        learning_rate=1e-3,
        log_every=25,
        progress=True,
    )
    config.quiescence = dict(
        batch=100 if quick else 200,
        steps=1000,
        burn_in=100,
        noise_mode="sqrt2",
        reference_sd=0.01,
        init="encoded",
        init_sd=1.0,
    )
    config.eval = dict(active_batch=200 if quick else 500, num_mc=2500, wasserstein_points=1000, hit_radius=0.15)
    config.conditions = {
        f"{task}_{variant}": ml_collections.ConfigDict(dict(task=dict(name=task), cell=cell))
        for task in config.tasks
        for variant, cell in VARIANTS.items()
    }
    return config
