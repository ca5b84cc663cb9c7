"""The interface every backbone implements."""

from typing import Protocol

from flax import nnx

from possm_jax.types import Array, PyTree


class Backbone(Protocol):
    """A recurrent map over chunk latents with explicit state in and out.

    ``step`` applied to chunks 0..c-1 in order, threading the state, must equal ``__call__`` on the window
    (to float32 round-off), so one code path serves training windows and streaming.
    """

    out_dim: int

    def init_state(self, batch: int) -> PyTree:
        """Zero state for ``batch`` streams."""
        ...

    def __call__(self, x: Array, state: PyTree, *, rngs: nnx.Rngs | None = None) -> tuple[Array, PyTree]:
        """x: [b, c, i] -> (y [b, c, h], new state). Dropout is active iff ``rngs`` is given (training)."""
        ...

    def step(self, x: Array, state: PyTree) -> tuple[Array, PyTree]:
        """x: [b, i] -> (y [b, h], new state). Always deterministic (inference)."""
        ...
