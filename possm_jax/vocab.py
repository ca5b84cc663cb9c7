"""String-keyed vocabularies for units and sessions (docs/model.md, docs/training.md).

Units are keyed ``brainset/session/unit`` and sessions ``brainset/session``, so ids from different recordings never
collide and a checkpoint's embedding rows can be matched to a new dataset by name. Index 0 is reserved (``"NA"``):
its embedding row is zero and never trained, and padding tokens point to it.

A :class:`Vocab` is immutable; :meth:`Vocab.extend` and :meth:`Vocab.subset` return a new vocabulary together with
the indices needed to carry embedding rows over, and :func:`remap_embedding` does that carrying for a table.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from possm_jax.nn.embedding import EMBEDDING_INIT_STD
from possm_jax.types import Array

RESERVED = "NA"
"""The id of row 0: padding / "no unit"."""


class UnknownIdError(ValueError):
    """An id was looked up that the vocabulary does not contain."""


def unit_key(brainset: str, session: str, unit: str) -> str:
    """The namespaced id of a unit: ``brainset/session/unit``."""
    return f"{brainset}/{session}/{unit}"


def session_key(brainset: str, session: str) -> str:
    """The namespaced id of a session: ``brainset/session``."""
    return f"{brainset}/{session}"


def _check_ids(ids: Sequence[str], argument: str) -> None:
    """Raises ValueError unless ``ids`` are distinct non-empty strings other than the reserved id."""
    for i in ids:
        if not isinstance(i, str) or not i:
            raise ValueError(f"{argument}: ids must be non-empty strings, got {i!r}")
        if i == RESERVED:
            raise ValueError(f"{argument}: {RESERVED!r} is reserved for index 0 and cannot be added")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise ValueError(f"{argument}: duplicate id {dup!r}; pass each id once")


class Vocab:
    """An immutable map from namespaced string ids to rows 1..n (row 0 is the reserved ``"NA"``).

    Args:
        ids: the ids of rows 1..n, in row order. Distinct, non-empty, not ``"NA"``.
        name: what the vocabulary indexes (``"unit"``, ``"session"``); used in error messages only.
    """

    __slots__ = ("_ids", "_index", "name")

    def __init__(self, ids: Iterable[str] = (), name: str = "id"):
        ids = tuple(ids)
        _check_ids(ids, f"{name} vocabulary")
        self._ids = (RESERVED, *ids)
        self._index = {k: i for i, k in enumerate(self._ids)}
        self.name = name

    @property
    def ids(self) -> tuple[str, ...]:
        """All ids in row order, ``"NA"`` first."""
        return self._ids

    def __len__(self) -> int:
        """The number of rows, including the reserved row 0."""
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._ids == other._ids

    def __hash__(self) -> int:
        return hash(self._ids)

    def __repr__(self) -> str:
        return f"Vocab(name={self.name!r}, size={len(self)})"

    def near_matches(self, key: str, n: int = 3) -> list[str]:
        """Up to ``n`` ids that look like ``key`` (difflib similarity), best first."""
        return difflib.get_close_matches(key, self._ids[1:], n=n, cutoff=0.5)

    def _unknown(self, key: str) -> UnknownIdError:
        near = self.near_matches(key)
        hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
        return UnknownIdError(
            f"unknown {self.name} id {key!r} (vocabulary of {len(self) - 1} ids).{hint} "
            f"To add new ids, use Vocab.extend (finetuning extends the vocabulary for unseen sessions)."
        )

    def index(self, key: str) -> int:
        """The row of ``key``. Raises UnknownIdError (a ValueError) listing near matches if absent."""
        try:
            return self._index[key]
        except KeyError:
            raise self._unknown(key) from None

    def indices(self, keys: Iterable[str]) -> np.ndarray:
        """Rows of ``keys`` as an int32 array; the first unknown key raises UnknownIdError."""
        return np.asarray([self.index(k) for k in keys], dtype=np.int32)

    def extend(self, new_ids: Iterable[str]) -> tuple[Vocab, np.ndarray]:
        """Appends the ids not yet present, in order of first appearance.

        Existing rows keep their indices, so a table extended with :func:`remap_embedding` keeps its old rows in place.

        Returns:
            ``(vocab, added)``: the extended vocabulary and the int32 rows of the ids that were added (empty if all
            were present). These are the rows unit identification (UI) trains.
        """
        added: list[str] = []
        for key in new_ids:
            if key not in self._index and key not in added:
                added.append(key)
        _check_ids(added, "extend(new_ids)")
        vocab = Vocab(self._ids[1:] + tuple(added), name=self.name)
        return vocab, np.arange(len(self), len(vocab), dtype=np.int32)

    def subset(self, ids: Iterable[str]) -> tuple[Vocab, np.ndarray]:
        """A vocabulary of only ``ids`` (in the given order), all of which must be present.

        Returns:
            ``(vocab, kept)``: the new vocabulary and, for each of its rows (row 0 included), the int32 row it had
            here, so ``old_table[kept]`` is the new table.
        """
        ids = tuple(ids)
        _check_ids(ids, "subset(ids)")
        kept = np.concatenate([[0], self.indices(ids)]).astype(np.int32)
        return Vocab(ids, name=self.name), kept

    def to_json(self) -> str:
        """A JSON string for checkpoints: ``{"name": ..., "reserved": "NA", "ids": [rows 1..n]}``."""
        return json.dumps({"name": self.name, "reserved": RESERVED, "ids": list(self._ids[1:])})

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        """Inverse of :meth:`to_json`. Raises ValueError on malformed input."""
        try:
            data = json.loads(text)
            ids, name, reserved = data["ids"], data.get("name", "id"), data.get("reserved", RESERVED)
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"not a vocabulary JSON (expected an object with an 'ids' list): {e}") from e
        if reserved != RESERVED:
            raise ValueError(f"vocabulary JSON reserves {reserved!r} for row 0; this version reserves {RESERVED!r}")
        if not isinstance(ids, list):
            raise ValueError(f"vocabulary JSON: 'ids' must be a list, got {type(ids).__name__}")
        return cls(ids, name=name)


def remap_embedding(
    table: Array, old: Vocab, new: Vocab, key: Array, std: float = EMBEDDING_INIT_STD
) -> tuple[Array, np.ndarray]:
    """Carries an embedding table from vocabulary ``old`` to ``new`` by string id.

    Rows whose id is in both vocabularies are copied; rows new to ``new`` are drawn from N(0, std²) with ``key``;
    row 0 is zero. Works for any pair of vocabularies (extend, subset, or both).

    Args:
        table: [len(old), d] embedding table.
        old: the vocabulary the table was trained with.
        new: the target vocabulary.
        key: PRNG key for the new rows.
        std: standard deviation of new rows.

    Returns:
        ``(new_table, fresh)``: the [len(new), d] table (dtype of ``table``) and the int32 rows that were freshly
        initialised (the rows unit identification trains).
    """
    if table.ndim != 2 or table.shape[0] != len(old):
        raise ValueError(
            f"table: expected shape [len(old)={len(old)}, d], got {tuple(table.shape)}; pass the table trained "
            f"with vocabulary `old`"
        )
    src = np.asarray([old._index.get(k, -1) for k in new.ids], dtype=np.int32)
    src[0] = -1  # row 0 is zero whatever the old table holds
    fresh = np.flatnonzero(src[1:] < 0).astype(np.int32) + 1
    init = std * jax.random.normal(key, (len(new), table.shape[1]), dtype=jnp.float32)
    copied = jnp.asarray(table)[np.maximum(src, 0)]
    new_table = jnp.where(src[:, None] >= 0, copied.astype(jnp.float32), init).at[0].set(0.0)
    return new_table.astype(table.dtype), fresh
