r"""Config for finetuning a pretrained POSSM on new sessions (``experiments/finetune.py``, docs/training.md).

    python -m experiments.finetune --config=experiments/configs/finetune.py:ui \
        --config.transfer.checkpoint=runs/pretrain/checkpoints --config.data.dir=runs/demo/data \
        --workdir=runs/finetune_ui

``arg`` is the mode: ``ui`` (only the new unit/session rows train), ``lora`` (rank-``transfer.lora_rank`` adapters
as the new rows of a frozen model), ``ft`` (UI for ``transfer.unfreeze_step`` steps,
then everything) or ``full``. The model comes from the checkpoint; its vocabulary is extended with the new ids.
"""

import ml_collections

from experiments.configs import pretrain
from possm_jax.train.transfer import MODES


def get_config(arg: str = "ui") -> ml_collections.ConfigDict:
    """The finetuning config for ``arg = mode[,quick]``."""
    mode, _, option = arg.partition(",")
    if mode not in MODES:
        raise ValueError(f"finetune mode {mode!r} unknown; use one of {MODES} (optionally ',quick')")
    c = pretrain.get_config("possm_small" + (f",{option}" if option else ""))
    c.data.sessions = "heldout"
    c.train.num_steps = 100 if option == "quick" else 2000
    c.transfer.mode = mode
    c.transfer.unfreeze_step = c.train.num_steps // 2
    c.eval.every = c.checkpoint.every = max(1, c.train.num_steps // 4)
    return c
