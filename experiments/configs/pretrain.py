r"""Config for POSSM pretraining / single-session training (``experiments/pretrain.py``).

Launch (``arg`` = a model preset, optionally ``,quick`` for a short CPU run):

    python -m experiments.pretrain --config=experiments/configs/pretrain.py:possm_small \
        --config.data.dir=runs/demo/data --config.data.sessions=pretrain --workdir=runs/pretrain

Single session (POSSM-SS): the ``single`` synthetic preset is one 15-minute centre-out session (the README has the
measured R² and why 5-minute sessions leave POSSM-SS data-limited):

    python -m data_pipeline.synth --preset=single --out=runs/single/data
    python -m experiments.pretrain --config=experiments/configs/pretrain.py:possm_small \
        --config.data.dir=runs/single/data --config.data.sessions=all \
        --config.train.num_steps=1000 --config.eval.every=500 --workdir=runs/possm_ss

``config.model`` holds every field of the chosen preset's :class:`~possm_jax.config.POSSMConfig` (backbone
included), each settable on the command line, e.g. ``--config.model.num_latents=4 --config.model.depth=1``,
``--config.model.backbone.kind=s4d`` or ``--config.model.lag=0.05`` (a strictly causal decoder: queries read only
chunks that ended by ``t - lag``). The chunk length is ``tokenizer.bin_width``, read by the model too.
Without ``data.dir`` a synthetic preset (``data.synthetic``) is generated in memory.
"""

import ml_collections

from possm_jax.config import get_preset, preset_names
from possm_jax.train.run_config import model_section


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
    c.model = model_section(get_preset(preset))
    # query_rate: training queries per second at most (a 1 kHz behaviour is thinned to every 10th sample);
    # evaluation scores every sample.
    c.tokenizer = dict(bin_width=0.05, window=1.0, target="cursor.vel", target_std=20.0, query_rate=100.0)
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
        dtype="float32",  # "bfloat16": bf16 forward/backward, float32 master weights and optimizer state
        model_shards=1,  # > 1: parameters and optimizer state split over this many devices (FSDP; docs/scaling.md)
        log_every=10 if quick else 50,
    )
    c.eval = dict(every=100 if quick else 1000, batch_size=16, final_split="test", strict=True)
    c.checkpoint = dict(every=100 if quick else 1000, keep=3)
    # lora: docs/training.md; partial: the model is this config's, and only the pretrained parameters that fit it are
    # carried (transfer to another task, e.g. reaching -> handwriting)
    c.transfer = dict(checkpoint="", mode="full", unfreeze_step=0, subset=False, lora_rank=32, partial=False)
    c.lock()  # a misspelt field fails instead of adding a new one
    return c
