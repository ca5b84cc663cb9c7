r"""Finetune a pretrained POSSM on new sessions: UI, FT (gradual unfreezing) or full (docs/training.md).

    python -m experiments.finetune --config=experiments/configs/finetune.py:ui \
        --config.transfer.checkpoint=runs/pretrain/checkpoints --config.data.dir=runs/demo/data \
        --workdir=runs/finetune_ui

The vocabulary of the checkpoint is extended with the new sessions' units and session ids (new rows N(0, 0.02));
sessions it has never seen are the normal case. Re-running with the same ``--workdir`` resumes.
"""

from typing import Any

from ml_collections import ConfigDict

from possm_jax.train.checkpoint import Checkpointer
from possm_jax.train.loop import train_and_evaluate


def finetune(config: ConfigDict, workdir: str) -> dict[str, Any]:
    """:func:`~possm_jax.train.loop.train_and_evaluate` from ``config.transfer.checkpoint`` (which must be set)."""
    if not config.transfer.checkpoint:
        raise ValueError(
            "transfer.checkpoint: not set; pass --config.transfer.checkpoint=<pretraining workdir>/checkpoints"
        )
    source = Checkpointer(config.transfer.checkpoint, read_only=True)  # fails fast, before any data is read
    source.restore_config()  # raises CheckpointError naming the directory if it holds no readable checkpoint
    source.close()
    return train_and_evaluate(config, workdir)


if __name__ == "__main__":
    from experiments.launch import launch

    launch(finetune, "Finetuning config file.", "runs/finetune")
