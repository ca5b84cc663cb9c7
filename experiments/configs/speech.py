r"""Config for training POSSM on attempted speech (phoneme CTC, two phases, ``docs/tasks.md``).

    python -m experiments.pretrain --config=experiments/configs/speech.py --workdir=runs/speech

``arg`` is a model preset, optionally ``,quick``. Without ``--config.data.dir`` the synthetic speech corpus is
generated in memory (``data.synthetic=speech``). 20 ms bins (``tokenizer.bin_width``), binned inputs,
``num_latents=4``, ``depth=1``. Phase 1 trains next-bin count reconstruction for ``task.reconstruct_steps`` steps,
phase 2 the CTC loss (plus ``task.reconstruct_weight`` × the count loss) until ``train.num_steps``; the phase follows
from the step, so a stopped run resumes in either phase. Checkpoints of phase 2 are ranked by validation PER;
``task.beam_width > 0`` decodes with prefix beam search instead of greedy.
"""

import ml_collections

from experiments.configs.binned_task import get_task_config


def get_config(arg: str = "possm_small") -> ml_collections.ConfigDict:
    """The speech config for ``arg = preset[,quick]``."""
    c = get_task_config(arg, "speech", bin_width=0.02, batch_size=16)
    c.task.reconstruct_steps = c.train.num_steps // 4
    return c
