"""Training: full BPTT through ``lax.scan``, MSE to the target code, Adam, a fresh batch every step.

One jitted functional step over the ``nnx.split`` parameters; the step key is ``fold_in(key, step)`` and is split
into a batch key and a noise key.
"""

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from possm_jax.replay.rnn import CellConfig, ReplayRNN
from possm_jax.replay.tasks import Batch, Task
from possm_jax.types import Array, PyTree


def cell_config(cfg: ml_collections.ConfigDict) -> CellConfig:
    """:class:`CellConfig` from a config's ``cell`` block."""
    return CellConfig(**cfg.to_dict())


def build_model(task: Task, cfg: ml_collections.ConfigDict, seed: int) -> ReplayRNN:
    """A fresh network for ``task`` with ``cfg.hidden_dim`` units and the ``cfg.cell`` recurrence."""
    return ReplayRNN(task.in_dim, cfg.hidden_dim, task.out_dim, cell_config(cfg.cell), rngs=nnx.Rngs(seed))


def mse_loss(model: ReplayRNN, batch: Batch, key: Array | None) -> Array:
    """Mean squared error between the outputs and the target codes over the whole sequence."""
    outputs, _, _ = model(batch.inputs, model.init_state(batch.init_code), key=key)
    return jnp.mean((outputs - batch.targets) ** 2)


def make_train_step(
    graphdef: nnx.GraphDef, task: Task, optimizer: optax.GradientTransformation, batch: int, steps: int
):
    """Jitted ``(params, opt_state, key) -> (params, opt_state, loss)`` that draws its own batch.

    Args:
        graphdef: From ``nnx.split(model, nnx.Param)``.
        task: The task (closed over, static).
        optimizer: Optax transformation.
        batch: Trajectories per step.
        steps: Time steps per trajectory.
    """

    def loss_fn(params: PyTree, data: Batch, key: Array) -> Array:
        return mse_loss(nnx.merge(graphdef, params), data, key)

    @jax.jit
    def train_step(params, opt_state, key):
        kbatch, knoise = jax.random.split(key)
        data = task.sample(kbatch, batch, steps)
        loss, grads = jax.value_and_grad(loss_fn)(params, data, knoise)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def train(
    model: ReplayRNN, task: Task, cfg: ml_collections.ConfigDict, key: Array, desc: str = "train"
) -> tuple[ReplayRNN, dict]:
    """Trains ``model`` in place on fresh batches of ``task``.

    Args:
        model: Network to train.
        task: Task to train on.
        cfg: ``train`` block: ``steps``, ``batch_size``, ``seq_len``, ``learning_rate``, ``log_every``, ``progress``.
        key: Training key (folded with the step number).
        desc: Progress-bar label.

    Returns:
        ``(model, history)`` with ``history = {"step", "loss", "seconds_per_step"}`` (timing excludes compilation).
    """
    graphdef, params = nnx.split(model, nnx.Param)
    optimizer = optax.adam(cfg.learning_rate)
    opt_state = optimizer.init(params)
    train_step = make_train_step(graphdef, task, optimizer, cfg.batch_size, cfg.seq_len)
    steps, losses, logged = [], [], []
    start = None
    for step in tqdm(range(cfg.steps), desc=desc, disable=not cfg.progress, mininterval=5.0):
        params, opt_state, loss = train_step(params, opt_state, jax.random.fold_in(key, step))
        if step == 0:
            loss.block_until_ready()
            start = time.perf_counter()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            logged.append(loss)
            steps.append(step)
    losses = np.asarray(jax.device_get(logged)).tolist()
    seconds = (time.perf_counter() - start) / max(cfg.steps - 1, 1)
    nnx.update(model, params)
    return model, {"step": steps, "loss": losses, "seconds_per_step": seconds}
