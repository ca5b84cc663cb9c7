"""The sessions of a run: loading a data directory or a synthetic preset, selecting sessions, vocabularies.

A data directory written by ``python -m data_pipeline.synth`` carries a ``dataset.json`` manifest that marks the
held-out sessions (kept out of pretraining for transfer experiments); any other directory of ``.h5`` sessions is
read as-is, with no session held out.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording
from data_pipeline.store_reader import open_directory
from data_pipeline.synth import generate
from data_pipeline.synth.presets import get_preset as get_synth_preset
from possm_jax.vocab import Vocab

SELECTIONS = ("all", "pretrain", "heldout", "heldout_session", "heldout_subject")


@dataclasses.dataclass
class Session:
    """A recording and whether its corpus holds it out of pretraining."""

    recording: Recording
    heldout: bool = False


def load_corpus(data_dir: str, synthetic: str = "tiny", seed: int = 0) -> list[Session]:
    """Sessions of ``data_dir`` (``.h5`` files, read lazily) or, if ``data_dir`` is empty, of a synthetic preset.

    Raises:
        DataError: ``data_dir`` is missing, holds no session files, an unusable one, or two files of one session
          (same ``brainset/session`` id: their units would merge).
    """
    if not data_dir:
        return [Session(rec, spec.heldout) for spec, rec in generate(get_synth_preset(synthetic), seed)]
    if not os.path.isdir(data_dir):
        raise DataError(data_dir, "<directory>", "does not exist", "pass --config.data.dir=<directory of .h5 sessions>")
    recordings = open_directory(data_dir)
    heldout: set[str] = set()
    manifest = os.path.join(data_dir, "dataset.json")
    if os.path.exists(manifest):
        with open(manifest, encoding="utf-8") as f:
            heldout = {e["session_id"] for e in json.load(f).get("sessions", []) if e.get("heldout")}
    return [Session(rec, rec.session_id in heldout) for rec in recordings]


def select(sessions: Sequence[Session], which: str) -> list[Recording]:
    """Recordings for ``which``: ``all``, ``pretrain`` (not held out), ``heldout``, ``heldout_session`` (held-out
    sessions of subjects seen in pretraining), ``heldout_subject`` (sessions of subjects never seen in pretraining),
    or comma-separated session ids.

    Raises:
        ValueError: the selection names unknown sessions or is empty.
    """
    available = [s.recording.session_id for s in sessions]
    if which == "all":
        chosen = list(sessions)
    elif which == "pretrain":
        chosen = [s for s in sessions if not s.heldout]
    elif which == "heldout":
        chosen = [s for s in sessions if s.heldout]
    elif which in ("heldout_session", "heldout_subject"):
        seen = {s.recording.subject_id for s in sessions if not s.heldout}
        want_seen = which == "heldout_session"
        chosen = [s for s in sessions if s.heldout and (s.recording.subject_id in seen) == want_seen]
    else:
        wanted = [w.strip() for w in which.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in available]
        if unknown:
            raise ValueError(f"data.sessions: unknown session ids {unknown}; use {SELECTIONS} or ids among {available}")
        chosen = [s for s in sessions if s.recording.session_id in wanted]
    if not chosen:
        raise ValueError(f"data.sessions={which!r} selects no session; available: {available}")
    return [s.recording for s in chosen]


def restrict_train(recording: Recording, fraction: float) -> Recording:
    """A view of ``recording`` whose train split keeps only its first ``fraction`` of time (little-data runs)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"data.train_fraction: must be in (0, 1], got {fraction}")
    if fraction == 1:
        return recording
    train = recording.splits["train"]
    start, end = np.asarray(train.start, np.float64), np.asarray(train.end, np.float64)
    budget = fraction * float(np.sum(end - start))
    before = np.concatenate([[0.0], np.cumsum(end - start)[:-1]])
    keep = before < budget
    new_end = np.minimum(end[keep], start[keep] + (budget - before[keep]))
    view = copy.copy(recording)
    view.splits = dict(recording.splits, train=Intervals(start[keep], new_end))
    return view


def unit_ids(recordings: Iterable[Recording]) -> list[str]:
    """Namespaced unit ids of every recording, in order."""
    return [key for rec in recordings for key in rec.unit_keys]


def build_vocabs(recordings: Sequence[Recording]) -> tuple[Vocab, Vocab]:
    """Unit and session vocabularies of ``recordings`` (namespaced string ids, row 0 reserved)."""
    units = Vocab(dict.fromkeys(unit_ids(recordings)), "unit")
    sessions = Vocab(dict.fromkeys(r.session_key for r in recordings), "session")
    return units, sessions


def vocab_maps(recordings: Sequence[Recording], units: Vocab, sessions: Vocab) -> list[tuple[np.ndarray, int]]:
    """Per recording, ``(unit_index, session_index)`` for the data pipeline."""
    return [(units.indices(r.unit_keys), sessions.index(r.session_key)) for r in recordings]
