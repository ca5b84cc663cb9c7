"""The blocks shared by the replay configs (network, task, training, quiescence, evaluation)."""

import ml_collections

PRESETS = ("paper", "quick")


def parse_arg(arg: str) -> tuple[str, str]:
    """Splits ``preset[,condition]``.

    Raises:
        ValueError: For an unknown preset.
    """
    preset, _, only = arg.partition(",")
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} unknown; use one of {PRESETS} (optionally ',<condition>').")
    return preset, only


def base_config(preset: str, only: str, *, task: str, quick_steps: int) -> ml_collections.ConfigDict:
    """The default blocks for ``preset``; each condition then overrides some of them.

    Args:
        preset: ``paper`` (paper sizes) or ``quick`` (a smaller network, fewer steps).
        only: run just this condition ('' runs all).
        task: the default task name.
        quick_steps: training steps of the quick preset (paper: 2500).
    """
    quick = preset == "quick"
    config = ml_collections.ConfigDict()
    config.preset = preset
    config.only = only
    config.seed = 0
    config.hidden_dim = 128 if quick else 512
    config.cell = dict(
        kind="rnn", leak=0.2, adapt_rate=0.0, adapt_strength=0.0, momentum=1.0, noise_sd=0.01, noise_kind="gaussian"
    )
    config.task = dict(
        name=task,
        num_cells=256 if quick else 512,
        sigma=0.2,
        dog_surround=0.0,
        bias=0.0,
        concentration=4.0,
        code_seed=0,
    )
    config.train = dict(
        steps=quick_steps if quick else 2500,
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
    return config
