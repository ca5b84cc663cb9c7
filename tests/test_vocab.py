"""Vocabularies: extend/subset by string id and embedding remapping, checked against plain dict computations."""

import jax
import numpy as np
import pytest

from possm_jax.vocab import RESERVED, UnknownIdError, Vocab, remap_embedding, session_key, unit_key

OLD_IDS = [unit_key("ds", "s1", f"u{i}") for i in range(5)]


def test_index_zero_reserved_and_lookup():
    v = Vocab(OLD_IDS, name="unit")
    assert v.ids[0] == RESERVED and len(v) == 6
    assert v.index(OLD_IDS[3]) == 4
    np.testing.assert_array_equal(v.indices([OLD_IDS[1], OLD_IDS[0]]), [2, 1])
    assert session_key("ds", "s1") == "ds/s1"


def test_unknown_id_lists_near_matches():
    v = Vocab(OLD_IDS, name="unit")
    with pytest.raises(UnknownIdError, match=r"unknown unit id 'ds/s1/u7'.*Did you mean 'ds/s1/u\d'") as e:
        v.index("ds/s1/u7")
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("bad", [[OLD_IDS[0], OLD_IDS[0]], [RESERVED], [""]])
def test_bad_ids_rejected(bad):
    with pytest.raises(ValueError, match="vocabulary"):
        Vocab(bad)


def test_extend_matches_dict_computation():
    v = Vocab(OLD_IDS)
    new_ids = [OLD_IDS[2], "ds/s2/a", "ds/s2/b", "ds/s2/a"]
    ext, added = v.extend(new_ids)
    # Independent: a dict that assigns the next free row to each unseen id.
    expected = {k: i for i, k in enumerate([RESERVED, *OLD_IDS])}
    for k in new_ids:
        expected.setdefault(k, len(expected))
    assert {k: ext.index(k) for k in expected} == expected
    np.testing.assert_array_equal(added, [expected["ds/s2/a"], expected["ds/s2/b"]])
    assert ext.extend(OLD_IDS)[1].size == 0


def test_subset_matches_dict_computation():
    v = Vocab(OLD_IDS)
    keep = [OLD_IDS[4], OLD_IDS[1]]
    sub, kept = v.subset(keep)
    assert sub.ids == (RESERVED, *keep)
    old_row = {k: i for i, k in enumerate([RESERVED, *OLD_IDS])}
    np.testing.assert_array_equal(kept, [0] + [old_row[k] for k in keep])
    with pytest.raises(UnknownIdError, match="ds/s9/u1"):
        v.subset(["ds/s9/u1"])


def test_json_round_trip_and_errors():
    v = Vocab(OLD_IDS, name="session")
    w = Vocab.from_json(v.to_json())
    assert w == v and w.name == "session"
    with pytest.raises(ValueError, match="not a vocabulary JSON"):
        Vocab.from_json('{"units": []}')


def test_remap_embedding_copies_by_id_and_inits_new_rows():
    old = Vocab(OLD_IDS)
    rng = np.random.default_rng(0)
    table = rng.normal(size=(len(old), 4)).astype(np.float32)
    table[0] = 7.0  # row 0 must come out zero whatever it held
    new, _ = old.subset([OLD_IDS[3], OLD_IDS[0]])
    new, _ = new.extend(["ds/s2/x", "ds/s2/y"])
    out, fresh = remap_embedding(table, old, new, jax.random.key(1))
    out = np.asarray(out)

    by_id = {k: table[i] for i, k in enumerate(old.ids)}
    for row, k in enumerate(new.ids):
        if row == 0:
            np.testing.assert_array_equal(out[0], 0.0)
        elif k in by_id:
            np.testing.assert_array_equal(out[row], by_id[k])
    np.testing.assert_array_equal(fresh, [3, 4])
    new_rows = out[fresh]
    assert not np.allclose(new_rows[0], new_rows[1])
    assert np.abs(new_rows).max() < 0.02 * 6


def test_remap_embedding_new_rows_have_std_002():
    old = Vocab(["a"])
    new, _ = old.extend([f"n{i}" for i in range(400)])
    out, fresh = remap_embedding(np.zeros((2, 64), np.float32), old, new, jax.random.key(0))
    sd = float(np.asarray(out)[fresh].std())
    assert abs(sd - 0.02) < 0.0005  # 25,600 draws: sd of the estimate ~ 0.02 / sqrt(2 * 25600) ~ 9e-5


def test_remap_embedding_rejects_wrong_table():
    with pytest.raises(ValueError, match="table: expected shape"):
        remap_embedding(np.zeros((3, 2)), Vocab(OLD_IDS), Vocab(OLD_IDS), jax.random.key(0))
