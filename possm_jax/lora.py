"""LoRA transfer: low-rank adapters on the unit and session embedding tables of a frozen pretrained POSSM.

A :class:`LoRAPOSSM` holds a pretrained (vocabulary-extended) :class:`~possm_jax.possm.POSSM` as a frozen, static
constant and, as its only parameters, one adapter per table: the table's new rows (the new session's units and the
session itself) are ``A @ B`` with ``A`` ``[new rows, r]`` and ``B`` ``[r, d]``. The adapter *is* the new rows (no
frozen random base under them); every pretrained row and every other weight is the base's, bit for bit, because it
is not a parameter at all. Trainable count: ``(new units + new sessions) · r + 2 · r · d`` (docs/training.md).

The base is referred to by a SHA-256 digest of its parameters (:func:`params_digest`), kept in the model state as
:class:`BaseDigest` so that checkpoints of a LoRA run record it; loading one checks it against the base found now.
:func:`merge_lora` folds the adapters into plain tables: the result is an ordinary POSSM, so streaming and export
cost nothing extra.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from possm_jax.nn.embedding import EMBEDDING_INIT_STD
from possm_jax.possm import POSSM
from possm_jax.train.state import param_paths
from possm_jax.types import Array, PyTree

TABLES = ("unit_emb/embedding", "session_emb/embedding")


class BaseMismatchError(ValueError):
    """A LoRA checkpoint is loaded on top of a base checkpoint other than the one it was trained on."""


class BaseDigest(nnx.Variable):
    """SHA-256 of the base model's parameters as 8 uint32 words (saved with every checkpoint, never trained)."""


def params_digest(model: nnx.Module) -> str:
    """Hex SHA-256 of ``model``'s ``nnx.Param`` values (paths, dtypes, shapes and bytes, in path order)."""
    params = nnx.state(model, nnx.Param)
    h = hashlib.sha256()
    for path, value in sorted(zip(param_paths(params), jax.tree.leaves(params), strict=True), key=lambda kv: kv[0]):
        x = np.ascontiguousarray(np.asarray(value))
        h.update(f"{path}:{x.dtype}:{x.shape};".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def digest_words(digest: str) -> np.ndarray:
    """A hex SHA-256 as 8 uint32 words (a checkpointable array)."""
    return np.frombuffer(bytes.fromhex(digest), dtype=">u4").astype(np.uint32)


def words_digest(words: Array) -> str:
    """Inverse of :func:`digest_words`."""
    return np.asarray(words, np.uint32).astype(">u4").tobytes().hex()


class FrozenBase:
    """The base model as host constants: its graph, state leaves and where the two tables are (a static attribute).

    Hashable by its digest and the adapted rows, so jitted functions keyed on a model graph recompile only for a
    different base.
    """

    def __init__(self, base: POSSM, unit_rows: np.ndarray, session_rows: np.ndarray, digest: str):
        self.graphdef, state = nnx.split(base)
        leaves, self.treedef = jax.tree.flatten(state)
        self.leaves = [np.array(x) for x in leaves]
        paths = param_paths(state)
        self.table_index = {name: paths.index(name) for name in TABLES}
        self.rows = {TABLES[0]: np.asarray(unit_rows, np.int32), TABLES[1]: np.asarray(session_rows, np.int32)}
        self.digest = digest

    def _key(self) -> tuple:
        return (self.digest, *(r.tobytes() for r in self.rows.values()))

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrozenBase) and self._key() == other._key()


class LoRATable(nnx.Module):
    """The new rows of one table, ``a @ b``: ``a`` [rows, r] ~ N(0, 1), ``b`` [r, d] ~ N(0, 0.02 / sqrt(r)).

    Both factors start non-zero so that LAMB's per-tensor trust ratio (an update proportional to the tensor's norm)
    moves both; the product's rows start with the spread of a freshly initialised embedding row.
    """

    def __init__(self, num_rows: int, rank: int, dim: int, *, rngs: nnx.Rngs):
        self.a = nnx.Param(jax.random.normal(rngs.params(), (num_rows, rank)))
        self.b = nnx.Param(jax.random.normal(rngs.params(), (rank, dim)) * (EMBEDDING_INIT_STD / np.sqrt(rank)))

    def rows(self) -> Array:
        """The adapted rows [num_rows, d]."""
        return self.a[...] @ self.b[...]


class LoRAPOSSM(nnx.Module):
    """A frozen POSSM whose new unit and session rows are low-rank adapters (module docstring).

    Args:
        base: the pretrained model carried over to the run's vocabularies (rows ``unit_rows`` / ``session_rows`` new).
        unit_rows, session_rows: the new rows of the unit and session tables.
        rank: the adapters' rank r.
        digest: :func:`params_digest` of the pretrained checkpoint's model.
        rngs: initialises the adapters.
    """

    def __init__(
        self,
        base: POSSM,
        unit_rows: Sequence[int] | np.ndarray,
        session_rows: Sequence[int] | np.ndarray,
        rank: int,
        digest: str,
        *,
        rngs: nnx.Rngs,
    ):
        if rank < 1:
            raise ValueError(f"transfer.lora_rank: must be >= 1, got {rank}")
        self.config, self.num_units, self.num_sessions = base.config, base.num_units, base.num_sessions
        self.frozen = FrozenBase(base, np.asarray(unit_rows), np.asarray(session_rows), digest)
        self.unit_emb = LoRATable(len(self.frozen.rows[TABLES[0]]), rank, base.config.dim, rngs=rngs)
        self.session_emb = LoRATable(len(self.frozen.rows[TABLES[1]]), rank, base.config.dim, rngs=rngs)
        self.base_digest = BaseDigest(jnp.asarray(digest_words(digest)))

    def merged(self) -> POSSM:
        """The POSSM whose tables hold the adapted rows (traceable: used inside jitted steps)."""
        frozen = self.frozen
        leaves = [jnp.asarray(x) for x in frozen.leaves]  # constants under jit
        for name, adapter in zip(TABLES, (self.unit_emb, self.session_emb), strict=True):
            i = frozen.table_index[name]
            leaves[i] = leaves[i].at[frozen.rows[name]].set(adapter.rows())
        return nnx.merge(frozen.graphdef, jax.tree.unflatten(frozen.treedef, leaves))

    def __call__(
        self, batch: dict[str, Array], state: PyTree | None = None, *, rngs: nnx.Rngs | None = None
    ) -> tuple[dict[str, Array], PyTree]:
        """:meth:`POSSM.__call__` of :meth:`merged`."""
        return self.merged()(batch, state, rngs=rngs)

    def check_base(self, where: str, base_path: str, recorded_path: str) -> None:
        """Raises :class:`BaseMismatchError` if the digest restored from ``where`` differs from the base's.

        Args:
            where: the LoRA checkpoint (named in the message).
            base_path: the base checkpoint the adapters were put on now.
            recorded_path: the base checkpoint the run's config names (the one it was trained on).
        """
        saved = words_digest(self.base_digest[...])
        if saved != self.frozen.digest:
            raise BaseMismatchError(
                f"LoRA checkpoint {where} was trained on the base {recorded_path} (digest {saved[:16]}), but the base "
                f"{base_path} holds another model (digest {self.frozen.digest[:16]}); load it with the base it was "
                f"trained on (load_checkpoint(..., base=<that base's checkpoints>)) or retrain the adapters."
            )


def merge_lora(model: LoRAPOSSM) -> POSSM:
    """A plain POSSM with the adapters folded into its tables (same predictions; streams and exports as usual)."""
    return model.merged()


def plain_model(model: nnx.Module) -> nnx.Module:
    """``model`` itself, or for a :class:`LoRAPOSSM` its :func:`merge_lora` (evaluation needs a plain POSSM)."""
    return merge_lora(model) if isinstance(model, LoRAPOSSM) else model


def adapter_count(new_units: int, new_sessions: int, rank: int, dim: int) -> int:
    """Trainable parameters of a LoRA transfer: ``(new_units + new_sessions) · rank + 2 · rank · dim``."""
    return (new_units + new_sessions) * rank + 2 * rank * dim
