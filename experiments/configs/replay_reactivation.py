"""Config for offline reactivation in noisy path-integrating RNNs (Krishna et al., SPEC 9.1).

Launch (``arg`` = ``preset`` or ``preset,condition``; presets ``paper`` and ``quick``):

    python -m experiments.replay_reactivation \\
        --config=experiments/configs/replay_reactivation.py:quick --workdir=runs/replay_reactivation

Conditions: spatial noisy / noise-free x unbiased / biased, an untrained spatial network, and the head-direction
task (noisy, unbiased / biased / untrained; ``paper`` preset only).
"""

import ml_collections

PRESETS = ("paper", "quick")


def _condition(**blocks) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(blocks)


def get_config(arg: str = "quick") -> ml_collections.ConfigDict:
    """Returns the config for ``arg = preset[,condition]``.

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
    config.hidden_dim = 128 if quick else 512
    config.cell = dict(
        kind="rnn", leak=0.2, adapt_rate=0.0, adapt_strength=0.0, momentum=1.0, noise_sd=0.01, noise_kind="gaussian"
    )
    config.task = dict(
        name="spatial",
        num_cells=256 if quick else 512,
        sigma=0.2,
        dog_surround=0.0,
        bias=0.0,
        concentration=4.0,
        code_seed=0,
    )
    config.train = dict(
        steps=1000 if quick else 2500,
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
