"""Embedding tables and their initialisation: every learned vector of the model starts as N(0, 0.02)."""

from flax import nnx

EMBEDDING_INIT_STD = 0.02
"""Standard deviation of embedding rows, latent and query vectors, and of rows added when a vocabulary grows."""


def embedding_init() -> nnx.initializers.Initializer:
    """The N(0, ``EMBEDDING_INIT_STD``) initialiser."""
    return nnx.initializers.normal(EMBEDDING_INIT_STD)


def vocab_embedding(num: int, dim: int, rngs: nnx.Rngs) -> nnx.Embed:
    """A [num, dim] N(0, 0.02) table whose row 0 (the reserved "none" id of a vocabulary) is zero."""
    table = nnx.Embed(num, dim, embedding_init=embedding_init(), rngs=rngs)
    table.embedding[...] = table.embedding[...].at[0].set(0.0)
    return table
