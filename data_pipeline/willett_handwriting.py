"""Read Willett et al. (2021) single-letter handwriting files (``singleLetters.mat``) into a binned session.

What is read: the cubes ``neuralActivityCube_<char>`` [trials, bins, 192] of 10 ms threshold-crossing counts, and, to
place each trial in its block, ``characterCues`` (the cue of every trial in recording order),
``goPeriodOnsetTimeBin`` (its go-cue bin in the continuous recording), ``blockNumsTimeSeries``, ``blockList``,
``meansPerBlock`` [blocks, 192] and ``stdAcrossAllData`` [1, 192]. Row ``j`` of a character's cube is that
character's ``j``-th cue, as in the authors' code.

Normalisation (the authors'): ``(counts - meansPerBlock[trial's block]) / stdAcrossAllData`` (a channel with zero
std is only centred). Trials are stored in recording order, end to end (module :mod:`data_pipeline.willett_mat`),
with ``label`` (index into :data:`data_pipeline.synth.handwriting.CHARACTERS`), ``go_cue_time`` (``go_bin`` bins
after the trial start), ``block`` and ``cube_row``. ``doNothing`` trials are skipped. Split, per character: cube row
``j`` is valid if ``j % 9 == 2``, test if ``j % 9 == 5``, else train. See ``docs/data_human.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording
from data_pipeline.synth.handwriting import BIN_WIDTH, CHANNELS, CHARACTERS
from data_pipeline.willett_mat import (
    MAT_FIX,
    binned_recording,
    block_intervals,
    check_channels,
    check_counts,
    float_matrix,
    int_vector,
    load_mat,
    mat_names,
    session_id_of,
    text_list,
    trial_bounds,
)

# File names of the characters, in the order of CHARACTERS (">" is the space, "~" the period).
CUE_NAMES = tuple("abcdefghijklmnopqrstuvwxyz") + ("greaterThan", "comma", "apostrophe", "tilde", "questionMark")
SKIPPED = ("doNothing",)
CUBE = "neuralActivityCube_"
GO_BIN = 50  # the cubes start 0.5 s before the go cue
FIELDS = (
    "characterCues",
    "goPeriodOnsetTimeBin",
    "blockNumsTimeSeries",
    "blockList",
    "meansPerBlock",
    "stdAcrossAllData",
)
assert len(CUE_NAMES) == len(CHARACTERS)


def cube_rows(path: Path, cues: list[str], cubes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For every kept trial in recording order: (index into ``cues``, row of its character's cube).

    Raises:
        DataError: a cue without a cube, or a cube whose row count differs from its character's number of cues.
    """
    kept, rows, seen = [], [], dict.fromkeys(cubes, 0)
    for i, cue in enumerate(cues):
        if cue in SKIPPED:
            continue
        if cue not in cubes:  # cubes hold only known characters
            raise DataError(path, f"{CUBE}{cue}", f"is missing (trial {i} of characterCues is '{cue}')", MAT_FIX)
        kept.append(i)
        rows.append(seen[cue])
        seen[cue] += 1
    for cue, cube in cubes.items():
        if seen[cue] != len(cube):
            raise DataError(
                path,
                "characterCues",
                f"cues '{cue}' {seen[cue]} times but {CUBE}{cue} has {len(cube)} trials",
                f"{MAT_FIX}; row j of a cube is its character's j-th cue",
            )
    return np.array(kept, dtype=np.int64), np.array(rows, dtype=np.int64)


def trial_blocks(path: Path, data: dict[str, np.ndarray], kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block id [n], row of ``meansPerBlock`` [n]) of the kept trials, from their go-cue bin."""
    go = int_vector(path, "goPeriodOnsetTimeBin", data["goPeriodOnsetTimeBin"])
    series = int_vector(path, "blockNumsTimeSeries", data["blockNumsTimeSeries"])
    block_list = int_vector(path, "blockList", data["blockList"])
    if len(go) <= kept.max(initial=-1):
        raise DataError(path, "goPeriodOnsetTimeBin", f"has {len(go)} entries, fewer than characterCues", MAT_FIX)
    go = go[kept]
    if np.any((go < 0) | (go >= len(series))):
        raise DataError(
            path, "goPeriodOnsetTimeBin", f"has bins outside blockNumsTimeSeries [0, {len(series)})", MAT_FIX
        )
    block = series[go]
    order = np.argsort(block_list, kind="stable")
    pos = np.minimum(np.searchsorted(block_list, block, sorter=order), len(block_list) - 1)
    row = order[pos]
    if np.any(block_list[row] != block):
        raise DataError(path, "blockList", f"lacks blocks {sorted(set(block) - set(block_list))}", MAT_FIX)
    return block, row


def normalisation(path: Path, data: dict[str, np.ndarray], num_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """(meansPerBlock [b, c], stdAcrossAllData [c] with zeros replaced by 1) checked against the channel count."""
    c = CHANNELS.num_channels
    means = float_matrix(path, "meansPerBlock", data["meansPerBlock"], (num_blocks, c))
    std = np.asarray(data["stdAcrossAllData"])
    std = std.reshape(1, -1) if std.ndim == 2 and 1 in std.shape else std  # [1, c] or [c, 1]
    std = float_matrix(path, "stdAcrossAllData", std, (1, c))[0]
    if np.any(std < 0):
        raise DataError(path, "stdAcrossAllData", "holds negative values", MAT_FIX)
    return means, np.where(std > 0, std, 1.0)  # a silent channel is only centred


def read_cubes(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the fields of FIELDS, the cubes by cue name) of ``path``, every cube checked for 192 channels and one length."""
    names = mat_names(path)
    cube_names = [CUBE + c for c in CUE_NAMES if CUBE + c in names]
    data = load_mat(path, [*FIELDS, *cube_names], names)
    cubes = {name[len(CUBE) :]: np.asarray(data[name]) for name in cube_names}
    for cue, cube in cubes.items():
        check_channels(path, CUBE + cue, cube, 3, CHANNELS.num_channels)
    bins = {cue: cube.shape[1] for cue, cube in cubes.items()}
    if len(set(bins.values())) > 1:
        raise DataError(path, CUBE + max(bins, key=bins.get), f"trial lengths differ: {bins}", MAT_FIX)
    return data, cubes


def read_handwriting(
    path: str | os.PathLike,
    *,
    brainset_id: str = "willett_handwriting_2021",
    session_id: str | None = None,
    subject_id: str = "T5",
    go_bin: int = GO_BIN,
) -> Recording:
    """Read a ``singleLetters.mat`` file into a :class:`Recording` (module docstring).

    Args:
        path: the ``singleLetters.mat`` file.
        brainset_id: dataset name, first part of every unit key.
        session_id: defaults to the folder name (``t5.2019.05.08``) for ``singleLetters.mat``, else the file stem.
        subject_id: the participant.
        go_bin: cube bin of the go cue (``go_cue_time = trial start + go_bin · 10 ms``).

    Returns:
        The session: units ``ch_000``… (192), 10 ms bins, trials with labels, blocks, splits.

    Raises:
        DataError: naming the file and the field that is missing or malformed.
    """
    path = Path(path)
    data, cubes = read_cubes(path)
    cues = text_list(path, "characterCues", data["characterCues"])
    kept, rows = cube_rows(path, cues, cubes)
    if len(kept) == 0:
        raise DataError(path, "characterCues", "names no character trials", MAT_FIX)
    cues = [cues[i] for i in kept]
    block, mean_row = trial_blocks(path, data, kept)
    means, std = normalisation(path, data, len(int_vector(path, "blockList", data["blockList"])))
    counts = [check_counts(path, CUBE + cue, cubes[cue][row]) for cue, row in zip(cues, rows, strict=True)]
    features = [(x - means[m]) / std for x, m in zip(counts, mean_row, strict=True)]
    start, end = trial_bounds([len(x) for x in counts], BIN_WIDTH)
    columns = {
        "label": np.array([CUE_NAMES.index(c) for c in cues], dtype=np.int64),
        "go_cue_time": start + go_bin * BIN_WIDTH,
        "block": block,
        "cube_row": rows,
    }
    trials = Intervals(start, end, columns)
    which = np.select([rows % 9 == 2, rows % 9 == 5], [1, 2], 0)
    first = np.unique(block, return_index=True)[1]  # one trial of each block, in block-id order
    blocks = block_intervals(trials, block, means[mean_row[first]], np.broadcast_to(std, (len(first), len(std))))
    ids = (brainset_id, session_id or session_id_of(path, "singleLetters"), subject_id)
    unit_ids = [f"ch_{c:03d}" for c in range(CHANNELS.num_channels)]
    return binned_recording(ids, unit_ids, counts, features, BIN_WIDTH, trials, which, {"blocks": blocks})
