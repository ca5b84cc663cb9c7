r"""Config for POSSM pretraining / single-session training (``experiments/pretrain.py``).

Launch (``arg`` = a model preset, optionally ``,quick`` for a short CPU run):

    python -m experiments.pretrain --config=experiments/configs/pretrain.py:possm_small \
        --config.data.dir=runs/demo/data --config.data.sessions=pretrain --workdir=runs/pretrain

Single session (POSSM-SS), e.g. the demo corpus's held-out centre-out session with its whole train split:

    python -m experiments.pretrain --config=experiments/configs/pretrain.py:possm_small \
        --config.data.dir=runs/demo/data --config.data.sessions=heldout --config.train.batch_size=32 \
        --config.train.lr_scale=2.0 --config.train.num_steps=700 --config.eval.every=350 --workdir=runs/possm_ss

(measured on 2 shared CPU cores: 2.5 min, test R² 0.896 chunk-causal / 0.583 strictly causal. Variations: 1500
steps at batch 64 0.900; model.dim=128 0.900; model.ffn_dropout=0 0.894; train.unit_dropout=False 0.881; the
188-unit session subject_00_session_000 0.909.)

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
    c.model = dict(preset=preset, dim=0, hidden=0, num_layers=0, backbone="", ffn_dropout=-1.0)
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
