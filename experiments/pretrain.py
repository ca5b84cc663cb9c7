r"""Pretrain POSSM on one or many sessions (SPEC 4); also trains single-session models (POSSM-SS).

    python -m experiments.pretrain --config=experiments/configs/pretrain.py:possm_small \
        --config.data.dir=runs/demo/data --workdir=runs/pretrain

Re-running with the same ``--workdir`` resumes from its newest checkpoint. SIGTERM saves, then exits. Writes
``metrics.json``, PNG plots and TensorBoard logs (``tb/``) to the workdir.
"""

from experiments.launch import launch
from possm_jax.train.loop import train_and_evaluate

if __name__ == "__main__":
    launch(train_and_evaluate, "Pretraining config file.", "runs/pretrain")
