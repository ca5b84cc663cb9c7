r"""Pretrain POSSM on one or many sessions; also trains single-session models (POSSM-SS).

    python -m experiments.pretrain --config=experiments/configs/pretrain.py:possm_small \
        --config.data.dir=runs/demo/data --workdir=runs/pretrain

Several processes (a SLURM or Open MPI job, or started by hand with ``--coordinator_address=localhost:PORT
--num_processes=N --process_id=i``, ``--num_cpu_devices`` to simulate devices on CPU) train one run together; recipes
for GPU nodes, SLURM and TPUs are in ``docs/scaling.md``. Re-running with the same ``--workdir`` resumes from its
newest checkpoint, on any number of devices and processes. SIGTERM saves, then exits. Writes
``metrics.json``, PNG plots and TensorBoard logs (``tb/``) to the workdir.
"""

from experiments.launch import launch
from possm_jax.train.loop import train_and_evaluate

if __name__ == "__main__":
    launch(train_and_evaluate, "Pretraining config file.", "runs/pretrain")
