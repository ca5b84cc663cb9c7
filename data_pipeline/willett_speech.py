"""Read Willett et al. (2023) speech competition files (``t12.2022.MM.DD.mat``) into a binned session.

What is read: ``sentenceText`` (space-padded char matrix, one row per sentence), ``blockIdx`` and the feature cells
``tx1``…``tx4`` (threshold-crossing counts) and ``spikePow`` (spike-band power), each a [1, n] cell of [T_i, 256]
arrays of 20 ms bins. Features are ``concat(tx1[:, :128], spikePow[:, :128])`` by default (area 6v, as the published
baseline), set by ``features`` and ``channels``; each feature column is a unit named ``<feature>_<channel>``.

Normalisation (the baseline's): per block, each feature column is z-scored over all bins of the block's sentences,
``(x - mean) / (std + 1e-8)``. Sentences are trials (column ``text``, ``block``, ``sentence``: row in its file), laid
end to end; the files of one session (its ``train/`` and ``test/`` copies) go into one recording, each file whole into
the split its folder names (``train`` → train, ``test`` and ``competitionHoldOut`` → test) unless told otherwise.

Phonemes: with a pronunciation dictionary (CMU-dict style, see :func:`read_phoneme_dict`), each sentence's words
become phoneme ids (:data:`PHONEMES`, ids 1–40, 0 the CTC blank) with ``SIL`` after every word, stored as
``intervals["phonemes"]`` (column ``phoneme``) spread evenly over the sentence: only their order is meaningful, there
is no alignment. Without a dictionary only the text is stored, and CTC training cannot use the session. See
``docs/data_human.md``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording
from data_pipeline.synth.speech import BIN_WIDTH
from data_pipeline.willett_mat import (
    MAT_FIX,
    binned_recording,
    block_intervals,
    check_channels,
    check_counts,
    int_vector,
    load_mat,
    mat_names,
    text_list,
    trial_bounds,
)

# 39 CMU phonemes without stress, then SIL (between words); a phoneme's id is its index + 1, 0 is the CTC blank.
PHONEMES = (
    *("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH"),
    *("K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH"),
    "SIL",
)
SIL = len(PHONEMES)
NUM_CHANNELS = 256
FEATURES = ("tx1", "tx2", "tx3", "tx4", "spikePow")
COUNT_FEATURES = ("tx1", "tx2", "tx3", "tx4")
EPS = 1e-8
SPLITS = ("train", "valid", "test")
SPLIT_OF_FOLDER = {"train": "train", "test": "test", "competitionHoldOut": "test"}
DICT_FIX = "give one word per line: 'WORD  PH PH ...' with CMU phonemes (stress digits are dropped)"


def read_phoneme_dict(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """A CMU-dict-style pronunciation file as ``{lower-case word: phoneme ids}``.

    Lines are ``WORD  PH1 PH2 ...``; ``;;;`` lines are comments, stress digits are dropped (``AH0`` → ``AH``), and
    alternate pronunciations (``WORD(2)``) and repeated words are ignored: the first pronunciation wins.

    Raises:
        DataError: the file cannot be read, holds an unknown phoneme, or no words.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise DataError(path, "<file>", f"cannot be read ({e})", DICT_FIX) from e
    lexicon: dict[str, tuple[int, ...]] = {}
    for number, line in enumerate(lines, 1):
        word, *phones = line.split() or [""]
        if not word or word.startswith(";;;") or re.fullmatch(r".+\(\d+\)", word):
            continue
        bases = [p.rstrip("012") for p in phones]
        unknown = [p for p in bases if p not in PHONEMES[:-1]]
        if unknown or not bases:
            problem = f"has unknown phonemes {unknown}" if unknown else "has no phonemes"
            raise DataError(path, f"line {number} ({word})", problem, DICT_FIX)
        lexicon.setdefault(word.lower(), tuple(PHONEMES.index(p) + 1 for p in bases))
    if not lexicon:
        raise DataError(path, "<file>", "holds no words", DICT_FIX)
    return lexicon


def sentence_words(text: str) -> list[str]:
    """The words of a sentence as the baseline cleans it: letters, ``-`` and ``'`` kept, ``--`` dropped, lower case."""
    return re.sub(r"[^a-zA-Z\- ']", "", text).replace("--", "").lower().split()


def sentence_phonemes(text: str, lexicon: dict[str, tuple[int, ...]], dict_path: Path) -> list[int]:
    """Phoneme ids of a sentence: each word's pronunciation followed by SIL (just SIL for an empty sentence)."""
    ids = []
    for word in sentence_words(text):
        if word not in lexicon:
            fix = "add the word to the pronunciation dictionary (CMU style: 'WORD  PH PH ...')"
            raise DataError(dict_path, f"word '{word}'", f"is missing (sentence '{text}')", fix)
        ids += [*lexicon[word], SIL]
    return ids or [SIL]


def feature_cells(path: Path, field: str, value: np.ndarray, n: int) -> list[np.ndarray]:
    """The ``n`` arrays [T_i, 256] of a feature cell, each checked (finite numbers, 256 channels)."""
    value = np.asarray(value)
    if value.dtype.kind != "O" or value.size != n:
        problem = f"has dtype {value.dtype}, shape {value.shape}, expected a cell of {n} arrays (one per sentence)"
        raise DataError(path, field, problem, MAT_FIX)
    cells = [np.asarray(cell) for cell in value.ravel()]
    for i, cell in enumerate(cells):
        check_channels(path, f"{field}[{i}]", cell, 2, NUM_CHANNELS)
        if not np.all(np.isfinite(cell)):
            raise DataError(path, f"{field}[{i}]", "holds NaN/inf values", MAT_FIX)
    return cells


def read_file(
    path: Path, features: Sequence[str], channels: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray], list[str], np.ndarray]:
    """One competition file: (raw features [T_i, c], counts [T_i, c], texts, block ids [n]) per sentence."""
    data = load_mat(path, [*features, "sentenceText", "blockIdx"], mat_names(path))
    texts = text_list(path, "sentenceText", data["sentenceText"])
    blocks = int_vector(path, "blockIdx", data["blockIdx"])
    if len(blocks) != len(texts):
        raise DataError(path, "blockIdx", f"has {len(blocks)} entries for {len(texts)} sentences", MAT_FIX)
    cells = {f: feature_cells(path, f, data[f], len(texts)) for f in features}
    raw, counts = [], []
    for i in range(len(texts)):
        lengths = {f: len(cells[f][i]) for f in features}
        if len(set(lengths.values())) > 1:
            raise DataError(path, f"{features[-1]}[{i}]", f"sentence {i} has different lengths {lengths}", MAT_FIX)
        parts = [cells[f][i][:, channels] for f in features]
        raw.append(np.concatenate(parts, axis=1).astype(np.float64))
        counts.append(np.concatenate([spike_counts(path, f"{f}[{i}]", cells[f][i][:, channels]) for f in features], 1))
    return raw, counts, texts, blocks


def spike_counts(path: Path, field: str, x: np.ndarray) -> np.ndarray:
    """Threshold crossings as i8 counts; spike-band power, not a count, as zeros (it has no spikes)."""
    return check_counts(path, field, x) if field.startswith(COUNT_FEATURES) else np.zeros(x.shape, np.int64)


def zscore_blocks(raw: list[np.ndarray], blocks: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per block, ``(x - mean) / (std + 1e-8)`` over all bins of its sentences: (normalised, mean [b, c], std [b, c])
    with blocks in ``np.unique`` order."""
    out: list[np.ndarray] = list(raw)
    means, stds = [], []
    for block in np.unique(blocks):
        rows = np.flatnonzero(blocks == block)
        stacked = np.concatenate([raw[i] for i in rows])
        mean, std = stacked.mean(axis=0), stacked.std(axis=0)
        for i in rows:
            out[i] = (raw[i] - mean) / (std + EPS)
        means.append(mean)
        stds.append(std)
    return out, np.array(means), np.array(stds)


def split_of(path: Path, split: str | None) -> int:
    """Split code (0 train, 1 valid, 2 test) of a file: ``split`` if given, else from its folder's name."""
    split = split or SPLIT_OF_FOLDER.get(path.parent.name)
    if split not in SPLITS:
        raise ValueError(
            f"split: cannot tell the split of {path} from its folder '{path.parent.name}'; "
            f"pass one of {SPLITS} (CLI: --split)"
        )
    return SPLITS.index(split)


def phoneme_intervals(trials: Intervals, sequences: list[list[int]]) -> Intervals:
    """Each trial's phoneme ids as equal intervals tiling the trial, in order (no alignment is implied)."""
    starts, ends, ids = [], [], []
    for s, e, seq in zip(trials.start, trials.end, sequences, strict=True):
        edges = s + (e - s) * np.arange(len(seq) + 1) / len(seq)
        starts.append(edges[:-1])
        ends.append(edges[1:])
        ids.append(np.asarray(seq, dtype=np.int64))
    return Intervals(np.concatenate(starts), np.concatenate(ends), {"phoneme": np.concatenate(ids)})


@dataclasses.dataclass
class SpeechFile:
    """One competition file, read and normalised: per sentence [T_i, c] arrays, and per block its statistics."""

    counts: list[np.ndarray]
    normalised: list[np.ndarray]
    texts: list[str]
    blocks: np.ndarray  # [n] block id of each sentence
    mean: np.ndarray  # [b, c] per block (np.unique order)
    std: np.ndarray  # [b, c]
    split: int  # 0 train, 1 valid, 2 test


def load_file(path: Path, features: Sequence[str], channels: np.ndarray, split: str | None) -> SpeechFile:
    """Read and z-score one file (:func:`read_file`, :func:`zscore_blocks`) and find its split."""
    code = split_of(path, split)
    raw, counts, texts, blocks = read_file(path, features, channels)
    normalised, mean, std = zscore_blocks(raw, blocks)
    return SpeechFile(counts, normalised, texts, blocks, mean, std, code)


def read_speech(
    paths: Sequence[str | os.PathLike],
    *,
    split: str | None = None,
    features: Sequence[str] = ("tx1", "spikePow"),
    channels: Sequence[int] = range(128),
    phoneme_dict: str | os.PathLike | None = None,
    brainset_id: str = "willett_speech_2023",
    session_id: str | None = None,
    subject_id: str = "T12",
) -> Recording:
    """Read the competition files of one session into a :class:`Recording` (module docstring).

    Args:
        paths: the session's files (e.g. ``train/t12.2022.06.14.mat`` and ``test/t12.2022.06.14.mat``), stored in
          this order.
        split: put every file in this split (train, valid or test) instead of the one its folder names.
        features: feature cells to read, concatenated in this order.
        channels: electrode columns taken from every feature (0–127: area 6v, 128–255: area 44).
        phoneme_dict: a CMU-style pronunciation file; without it no phoneme labels are stored.
        brainset_id, session_id, subject_id: identifiers; the session id defaults to the files' common stem.

    Returns:
        The session: one unit per feature column, 20 ms bins, sentences as trials, blocks, splits (and phonemes).

    Raises:
        DataError: naming the file and field that is missing or malformed (or the dictionary word that is missing).
        ValueError: bad arguments (unknown feature, channel out of range, files of different sessions, no split).
    """
    paths = [Path(p) for p in paths]
    features, channels = tuple(features), np.asarray(channels, dtype=np.int64)
    check_arguments(paths, features, channels, session_id)
    lexicon = read_phoneme_dict(phoneme_dict) if phoneme_dict is not None else None
    files = [load_file(path, features, channels, split) for path in paths]
    counts = [x for f in files for x in f.counts]
    texts = [t for f in files for t in f.texts]
    start, end = trial_bounds([len(x) for x in counts], BIN_WIDTH)
    columns = {
        "text": np.array([t.encode("ascii", "replace").decode() for t in texts]),  # the store keeps text as ASCII
        "block": np.concatenate([f.blocks for f in files]),
        "sentence": np.concatenate([np.arange(len(f.texts)) for f in files]),
    }
    trials = Intervals(start, end, columns)
    first = np.cumsum([0] + [len(f.texts) for f in files])
    blocks = [
        block_intervals(Intervals(start[a:b], end[a:b]), f.blocks, f.mean, f.std)
        for f, a, b in zip(files, first[:-1], first[1:], strict=True)
    ]
    intervals = {"blocks": concat_intervals(blocks)}
    if lexicon is not None:
        intervals["phonemes"] = phoneme_intervals(
            trials, [sentence_phonemes(t, lexicon, Path(phoneme_dict)) for t in texts]
        )
    ids = (brainset_id, session_id or paths[0].stem, subject_id)
    unit_ids = [f"{f}_{c:03d}" for f in features for c in channels]
    which = np.concatenate([np.full(len(f.texts), f.split) for f in files])
    normalised = [x for f in files for x in f.normalised]
    return binned_recording(ids, unit_ids, counts, normalised, BIN_WIDTH, trials, which, intervals)


def check_arguments(paths: list[Path], features: tuple[str, ...], channels: np.ndarray, session_id: str | None) -> None:
    """Raise ValueError for arguments :func:`read_speech` cannot use."""
    if not paths:
        raise ValueError("paths: pass at least one competition .mat file")
    if not features or any(f not in FEATURES for f in features) or len(set(features)) != len(features):
        raise ValueError(f"features={features}: choose distinct features among {FEATURES}")
    if not any(f in COUNT_FEATURES for f in features):
        raise ValueError(
            f"features={features}: include a threshold-crossing feature (tx1..tx4): the store needs spikes"
        )
    if channels.ndim != 1 or not channels.size or channels.min() < 0 or channels.max() >= NUM_CHANNELS:
        raise ValueError(f"channels: pass electrode indices in [0, {NUM_CHANNELS})")
    if session_id is None and len({p.stem for p in paths}) > 1:
        raise ValueError(f"paths: files of different sessions {sorted({p.stem for p in paths})}; pass one session")


def concat_intervals(parts: list[Intervals]) -> Intervals:
    """Interval sets with the same columns, one after the other."""
    columns = {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns}
    return Intervals(np.concatenate([p.start for p in parts]), np.concatenate([p.end for p in parts]), columns)
