"""Quiescence: zero input, amplified noise, long runs from random initial states (Krishna et al., ICLR 2024).

Noise options (``noise_mode``): ``sqrt2`` multiplies the training noise by sqrt(2) (variance doubled, the paper's
default), ``same`` keeps it, ``double`` multiplies it by 2. Networks trained without noise are run with the noise of
a reference noisy network (``reference_sd``), so that noisy and noise-free training are compared under the same
quiescent noise.

Initial states (``init``): ``encoded`` encodes a uniformly drawn state (``h0 = W_enc f(s0)``); ``gaussian`` draws
``h0 ~ N(0, init_sd^2)`` independently of the task.

Shapes: ``b`` trajectories, ``t`` steps, ``h`` hidden, ``o`` output cells, ``k`` decoded state size.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from possm_jax.replay.rnn import CellState, ReplayRNN
from possm_jax.replay.tasks import Task
from possm_jax.types import Array

NOISE_SCALES = {"sqrt2": 2**0.5, "same": 1.0, "double": 2.0}
INITS = ("encoded", "gaussian")


class Rollout(NamedTuple):
    """Network activity and decoded states.

    Attributes:
        hidden: ``[b, t, h]``.
        decoded: ``[b, t, k]``.
    """

    hidden: Array
    decoded: Array


def quiescent_noise_sd(model: ReplayRNN, noise_mode: str, reference_sd: float) -> float:
    """Absolute quiescent noise sd: the trained sd (or ``reference_sd`` if trained noise-free) times the mode's factor.

    Raises:
        ValueError: For an unknown ``noise_mode``.
    """
    if noise_mode not in NOISE_SCALES:
        raise ValueError(f"noise_mode={noise_mode!r}; choose one of {tuple(NOISE_SCALES)}.")
    trained_sd = model.cell.noise_sd if model.cell.noise_sd > 0 else reference_sd
    return NOISE_SCALES[noise_mode] * trained_sd


def run_quiescence(
    model: ReplayRNN,
    task: Task,
    key: Array,
    *,
    batch: int,
    steps: int,
    noise_mode: str = "sqrt2",
    reference_sd: float = 0.01,
    init: str = "encoded",
    init_sd: float = 1.0,
) -> Rollout:
    """Runs the network with zero input.

    Args:
        model: Trained (or untrained) network.
        task: Its task (gives the input size, the encoder's code and the decoder).
        key: PRNG key.
        batch: Number of independent quiescent runs ``b``.
        steps: Steps per run ``t`` (1000 in the paper).
        noise_mode: See the module docstring.
        reference_sd: Absolute noise sd used for networks trained without noise.
        init: ``encoded`` or ``gaussian``.
        init_sd: Standard deviation of ``gaussian`` initial states.

    Returns:
        The quiescent :class:`Rollout`.

    Raises:
        ValueError: For an unknown ``init`` or ``noise_mode``.
    """
    if init not in INITS:
        raise ValueError(f"init={init!r}; choose one of {INITS}.")
    kinit, knoise = jax.random.split(key)
    hidden_dim = model.w_rec.shape[0]
    if init == "encoded":
        start = task.sample_path(kinit, batch, 1).start
        state0 = model.init_state(task.encode(start))
    else:
        h0 = init_sd * jax.random.normal(kinit, (batch, hidden_dim))
        state0 = CellState(h=h0, a=jnp.zeros_like(h0), v=jnp.zeros_like(h0))
    noise_sd = quiescent_noise_sd(model, noise_mode, reference_sd)
    outputs, hidden, _ = model(jnp.zeros((batch, steps, task.in_dim)), state0, key=knoise, noise_sd=noise_sd)
    return Rollout(hidden=hidden, decoded=task.decode(outputs))


def run_active(model: ReplayRNN, task: Task, key: Array, *, batch: int, steps: int) -> tuple[Rollout, Array]:
    """Runs the network on fresh task trajectories with its training noise.

    Returns:
        ``(rollout, true_states [b, t, k])``.
    """
    kbatch, knoise = jax.random.split(key)
    data = task.sample(kbatch, batch, steps)
    outputs, hidden, _ = model(data.inputs, model.init_state(data.init_code), key=knoise)
    return Rollout(hidden=hidden, decoded=task.decode(outputs)), data.states
