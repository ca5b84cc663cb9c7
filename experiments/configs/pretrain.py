r"""Config for POSSM pretraining / single-session training (``experiments/pretrain.py``).

Launch (``arg`` = a model preset, optionally ``,quick`` for a short CPU run):

    python -m experiments.pretrain --config=experiments/configs/pretrain.py:possm_small \
        --config.data.dir=runs/demo/data --config.data.sessions=pretrain --workdir=runs/pretrain

Single session (POSSM-SS): the ``single`` synthetic preset is one 15-minute centre-out session (630 s of training
trials; 5-minute sessions leave POSSM-SS data-limited near 0.90, see the README):

    python -m data_pipeline.synth --preset=single --out=runs/single/data
    python -m experiments.pretrain --config=experiments/configs/pretrain.py:possm_small \
        --config.data.dir=runs/single/data --config.data.sessions=all \
        --config.train.num_steps=1000 --config.eval.every=500 --workdir=runs/possm_ss

(measured on 2 shared CPU cores: 12 min, test R² 0.936 chunk-causal; the binned GRU trained the same way,
``python -m experiments.calibrate --preset=single --gru_steps=1000``, 0.913. ``--config.model.lag=0.05`` trains a
strictly causal decoder: 0.894, where the chunk-causal model evaluated at that lag scores 0.621.)

Without ``data.dir`` a synthetic preset (``data.synthetic``) is generated in memory. Model fields left at 0 / -1 /
'' keep the preset's value.
"""

import ml_collections

from possm_jax.config import preset_names


def get_config(arg: str = "possm_small") -> ml_collections.ConfigDict:
    """The config for ``arg = preset[,quick]``.

    Raises:
        ValueError: unknown preset or option.
    """
    preset, _, option = arg.partition(",")
    if preset not in preset_names():
        raise ValueError(f"config preset {preset!r} unknown; use one of {preset_names()} (optionally ',quick')")
    if option not in ("", "quick"):
        raise ValueError(f"config option {option!r} unknown; use ',quick' or nothing")
    quick = option == "quick"
    c = ml_collections.ConfigDict()
    c.data = dict(dir="", synthetic="tiny", seed=0, sessions="pretrain", train_fraction=1.0)
    # lag >= 0 trains a strictly causal decoder (queries read chunks ended by t - lag; SPEC 6), -1 keeps the preset's.
    c.model = dict(preset=preset, dim=0, hidden=0, num_layers=0, backbone="", ffn_dropout=-1.0, lag=-1.0)
    c.tokenizer = dict(bin_width=0.05, window=1.0, target="cursor.vel", target_std=20.0)
    c.train = dict(
        batch_size=64,
        num_steps=200 if quick else 20_000,
        seed=0,
        lr_scale=1.0,
        unit_dropout=True,
        max_spikes=0,  # 0: sized from the densest training window
        max_queries=128,  # used with max_spikes
        pack_spikes=True,  # pack each batch's spike tokens across its rows (a few compilations, much less padding)
        num_workers=0,
        log_every=10 if quick else 50,
    )
    c.eval = dict(every=100 if quick else 1000, batch_size=16, final_split="test", strict=True)
    c.checkpoint = dict(every=100 if quick else 1000, keep=3)
    c.transfer = dict(checkpoint="", mode="full", unfreeze_step=0, subset=False)
    return c
