"""Convert an NWB file (DANDI and friends) into a session store file, with plain h5py (no pynwb at runtime).

What is read (the mapping is described for users in docs/data.md):
  * ``units/spike_times`` with ``units/spike_times_index`` (cumulative end offsets, one per unit) and ``units/id``;
  * every table under ``intervals/`` (``trials``, ``epochs``...) with ``start_time``/``stop_time`` and its 1-D
    numeric or string columns;
  * every TimeSeries under ``processing/behavior``, directly or inside one container layer (``Position``,
    ``BehavioralTimeSeries``...), sampled by ``timestamps`` or by ``starting_time`` + ``rate``, scaled to SI with
    the data's ``conversion``/``offset``.

Behaviour naming: a series named ``hand_vel`` becomes behaviour ``hand``, value ``vel`` (split at the last ``_``), so
NLB's ``hand_pos``/``hand_vel`` land in one ``hand`` series; a name without ``_`` gives value ``data``. Series that
would share a behaviour name but not their timestamps keep their own full name. ``rename`` overrides the rule per
series: ``{"Position/cursor": "cursor/pos"}``.

Splits (:mod:`data_pipeline.splits`): trials labelled by a ``split`` column (NLB / DANDI files) keep their labels,
``val`` trials to test and every 10th ``train`` trial to valid; otherwise whole trials go to ``valid``/``test``
(deterministic per ``seed``), the rest of the session to ``train``; without trials the session is cut in time into
consecutive train/valid/test blocks.

Every defect (unsorted spike times within a unit, NaN times, overlapping trials, behaviour data and timestamps of
different lengths...) is one :class:`~data_pipeline.errors.DataError` naming the NWB file and field.

CLI: ``python -m data_pipeline.nwb_import IN.nwb OUT.h5 --brainset=NAME [--session=ID] [--split=0.7,0.1,0.2]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from data_pipeline import errors
from data_pipeline.errors import DataError
from data_pipeline.recording import Intervals, Recording, TimeSeries
from data_pipeline.splits import SPLIT_LABELS, make_splits, splits_from_labels
from data_pipeline.store_parser import as_text_array, is_checked_interval_set
from data_pipeline.store_writer import write_recording

_NWB_FIX = "pass an NWB 2.x file written by pynwb/MatNWB"


def _spikes(path: Path, file: h5py.File) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit ids [u] str, spike times [n] f8 sorted, unit rows [n] i8) from the ragged ``units`` table."""
    for field in ("units", "units/id", "units/spike_times", "units/spike_times_index"):
        if field not in file:
            raise DataError(path, field, "is missing", "export spike-sorted units with their spike times to the NWB")
    with errors.reading(path, "units"):
        ids = as_text_array(file["units/id"][()]).astype(str)
        times = file["units/spike_times"][()]
        ends = file["units/spike_times_index"][()]
    fix = "units/spike_times_index must hold each unit's cumulative end offset into units/spike_times"
    errors.check_float_vector(path, "units/spike_times", times, fix="store spike times as finite float seconds")
    if ends.dtype.kind not in "iu" or ends.shape != ids.shape or np.any(np.diff(ends.astype(np.int64)) < 0):
        raise DataError(path, "units/spike_times_index", f"has dtype {ends.dtype}, shape {ends.shape}", fix)
    if len(ends) and int(ends[-1]) != len(times):
        raise DataError(path, "units/spike_times_index", f"ends at {ends[-1]}, not at {len(times)} spikes", fix)
    if len(times) == 0:
        raise DataError(path, "units/spike_times", "is empty: the session has no spikes", "drop this session")
    if len(np.unique(ids)) != len(ids):
        raise DataError(path, "units/id", "has duplicate unit ids", "give every unit a unique id")
    counts = np.diff(ends.astype(np.int64), prepend=0)
    rows = np.repeat(np.arange(len(ids), dtype=np.int64), counts)
    _check_sorted_per_unit(path, ids, times, rows)
    order = np.argsort(times, kind="stable")  # NWB stores spikes unit by unit; we store them in time order
    return ids, times[order].astype(np.float64), rows[order]


def _check_sorted_per_unit(path: Path, ids: np.ndarray, times: np.ndarray, rows: np.ndarray) -> None:
    """Require each unit's spike times ``times[rows == u]`` (stored contiguously, unit by unit) to be increasing."""
    drops = np.flatnonzero((np.diff(times) < 0) & (rows[1:] == rows[:-1]))
    if drops.size:
        i = int(drops[0])
        raise DataError(
            path,
            "units/spike_times",
            f"is not sorted within unit '{ids[rows[i]]}' ({float(times[i + 1])!r} after {float(times[i])!r} at "
            f"index {i + 1}; {drops.size} such steps in all)",
            "store each unit's spike times in increasing order",
        )


def _table(path: Path, table: h5py.Group, field: str) -> Intervals:
    """An NWB TimeIntervals table as Intervals sorted by start, with its 1-D numeric/string columns.

    Ragged, multi-dimensional and reference columns are not carried over; a 1-D column of the wrong length is skipped
    with a warning. The interval sets a run uses (trials...) must not overlap.
    """
    with errors.reading(path, field):
        start = table["start_time"][()]
        end = table["stop_time"][()] if "stop_time" in table else None
    if end is None:
        raise DataError(path, f"{field}/stop_time", "is missing", "give every interval a stop_time")
    errors.check_intervals(path, field, start, end, names=("start_time", "stop_time"))
    columns = {}
    for key, node in table.items():
        ragged = f"{key}_index" in table or key.endswith("_index")
        if key in ("id", "start_time", "stop_time") or ragged or not isinstance(node, h5py.Dataset):
            continue
        text = h5py.check_string_dtype(node.dtype) is not None or node.dtype.kind == "S"
        if node.ndim != 1 or not (text or node.dtype.kind in "fiub"):
            continue  # references, compound and multi-dimensional columns are not carried over
        if node.shape != start.shape:
            problem = f"has {node.shape[0]} rows but '{field}/start_time' has {len(start)}"
            errors.warn_skipped(DataError(path, f"{field}/{key}", problem, "write one value per interval"))
            continue
        with errors.reading(path, f"{field}/{key}"):
            columns[key] = as_text_array(node[()]) if text else node[()]
    order = np.argsort(start, kind="stable")
    start, end = start[order].astype(np.float64), end[order].astype(np.float64)
    if is_checked_interval_set(field.removeprefix("intervals/")):
        errors.check_disjoint(path, field, start, end)
    return Intervals(start, end, {k: v[order] for k, v in columns.items()})


def _series_groups(module: h5py.Group) -> dict[str, h5py.Group]:
    """TimeSeries groups in a processing module, directly or one container deep, keyed by relative path."""
    found = {}
    for name, node in module.items():
        if not isinstance(node, h5py.Group):
            continue
        if "data" in node:
            found[name] = node
        else:
            found.update({f"{name}/{k}": v for k, v in node.items() if isinstance(v, h5py.Group) and "data" in v})
    return found


def _read_series(path: Path, group: h5py.Group, field: str) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(timestamps [t] f8, data [t, ...] in SI units, sampling rate or None) of one NWB TimeSeries.

    NaN in the data is kept (tracking gaps); inf is an error.
    """
    with errors.reading(path, field):
        data = group["data"][()]
        scale = float(group["data"].attrs.get("conversion", 1.0))
        shift = float(group["data"].attrs.get("offset", 0.0))
    if data.dtype.kind not in "fiub" or data.ndim == 0:
        raise DataError(
            path, f"{field}/data", f"has dtype {data.dtype}, shape {data.shape}", "store behaviour as numbers"
        )
    if "timestamps" in group:
        with errors.reading(path, f"{field}/timestamps"):
            timestamps, rate = group["timestamps"][()], None
        fix = f"store '{field}/timestamps' as sorted finite float seconds"
        errors.check_float_vector(path, f"{field}/timestamps", timestamps, fix=fix)
        errors.check_sorted(path, f"{field}/timestamps", timestamps, fix=fix)
    else:
        timestamps, rate = _rate_timestamps(path, group, field, len(data))
    errors.check_same_length(path, f"{field}/data", data, len(timestamps), f"{field}/timestamps")
    if data.dtype.kind == "f" and np.isinf(data).any():
        raise DataError(path, f"{field}/data", "holds inf values", "store missing samples as NaN")
    if scale != 1.0 or shift != 0.0:
        data = data * scale + shift
    return timestamps.astype(np.float64), data, rate


def _rate_timestamps(path: Path, group: h5py.Group, field: str, n: int) -> tuple[np.ndarray, float]:
    """Sample times ``starting_time + arange(n) / rate`` of a TimeSeries without timestamps, and the rate."""
    name = f"{field}/starting_time"
    with errors.reading(path, name):
        node = group.get("starting_time")
        if node is None:
            raise DataError(path, f"{field}/timestamps", "is missing", "give the series timestamps or starting_time")
        start = float(node[()])
        rate = float(node.attrs["rate"]) if "rate" in node.attrs else np.nan
    if not np.isfinite(start):
        raise DataError(path, name, f"is {start}", "store the time of the first sample in seconds")
    if not np.isfinite(rate) or rate <= 0:
        raise DataError(path, f"{name}.attrs[rate]", f"is {rate}", "store the sampling rate in Hz (> 0)")
    return start + np.arange(n, dtype=np.float64) / rate, rate


@dataclasses.dataclass
class _Series:
    key: str  # value name inside the behaviour series it joins
    source: str  # NWB series name, the fallback behaviour name
    timestamps: np.ndarray
    data: np.ndarray
    rate: float | None


def _target(rel: str, rename: dict[str, str]) -> tuple[str, str]:
    """(behaviour name, value key) for the series at ``rel`` under processing/behavior."""
    series = rel.rsplit("/", 1)[-1]
    target = rename.get(rel) or rename.get(series)
    if target is None:
        prefix, _, suffix = series.rpartition("_")
        target = f"{prefix}/{suffix}" if prefix and suffix else series
    name, _, key = target.rpartition("/")
    return (name, key) if name else (target, "data")


def _behaviour(path: Path, file: h5py.File, rename: dict[str, str]) -> dict[str, TimeSeries]:
    """Group the behaviour TimeSeries into named series (see the module docstring for the naming rule)."""
    module = file.get("processing/behavior")
    if not isinstance(module, h5py.Group):
        return {}
    by_name: dict[str, list[_Series]] = {}
    for rel, group in _series_groups(module).items():
        timestamps, data, rate = _read_series(path, group, f"processing/behavior/{rel}")
        name, key = _target(rel, rename)
        by_name.setdefault(name, []).append(_Series(key, rel.rsplit("/", 1)[-1], timestamps, data, rate))
    out: dict[str, TimeSeries] = {}
    for name, members in by_name.items():
        first = members[0]
        same_axis = all(np.array_equal(m.timestamps, first.timestamps) for m in members)
        if same_axis and len({m.key for m in members}) == len(members):
            rate = first.rate if all(m.rate == first.rate for m in members) else None
            series = {name: TimeSeries(first.timestamps, {m.key: m.data for m in members}, rate)}
        else:  # no shared time axis: each series stands alone under its NWB name
            series = {m.source: TimeSeries(m.timestamps, {"data": m.data}, m.rate) for m in members}
        for key, value in series.items():
            if key in out:
                raise DataError(
                    path,
                    f"processing/behavior/{key}",
                    "collides with another behaviour series of that name",
                    "name one of them with rename={'<series>': '<behaviour>/<value>'} (CLI: --rename)",
                )
            out[key] = value
    return out


def _splits(
    path: Path, domain: Intervals, trials: Intervals | None, fractions: Sequence[float], seed: int
) -> dict[str, Intervals]:
    """The trials' own labels when they carry a ``split`` column (NLB / DANDI), else :func:`make_splits`."""
    if trials is None or "split" not in trials.columns:
        return make_splits(domain, trials, fractions, seed)
    labels = np.asarray(trials.columns["split"]).astype(str)
    unknown = sorted(set(labels.tolist()) - set(SPLIT_LABELS))
    if unknown:
        raise DataError(
            path,
            "intervals/trials/split",
            f"holds unknown labels {', '.join(map(repr, unknown))}",
            f"label every trial one of {', '.join(SPLIT_LABELS)} (the NLB convention), or drop the column to draw "
            "the splits at random",
        )
    return splits_from_labels(domain, trials, labels)


def _identifier(file: h5py.File, key: str) -> str | None:
    node = file.get(key)
    if not isinstance(node, h5py.Dataset):
        return None
    value = node[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nwb(
    path: str | os.PathLike,
    *,
    brainset_id: str,
    session_id: str | None = None,
    subject_id: str | None = None,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    rename: dict[str, str] | None = None,
) -> Recording:
    """Read an NWB file into a :class:`Recording` (the file is opened read-only).

    Args:
        path: the ``.nwb`` file.
        brainset_id: the dataset the session belongs to (e.g. the DANDI set name).
        session_id: defaults to ``general/session_id`` in the file, else the file name.
        subject_id: defaults to ``general/subject/subject_id``, else ``"unknown"``.
        fractions: (train, valid, test) shares of the trials; see :func:`~data_pipeline.splits.make_splits`. Unused
          when the trials carry a ``split`` column (see :func:`~data_pipeline.splits.splits_from_labels`).
        seed: seed of the trial assignment (likewise unused then).
        rename: behaviour naming overrides, ``{"<series path or name>": "<behaviour>/<value>"}``.

    Raises:
        DataError: naming the NWB field that is missing or malformed.
    """
    path = Path(path)
    with errors.open_hdf5(path, _NWB_FIX) as file:
        unit_ids, times, rows = _spikes(path, file)
        tables = file.get("intervals")
        intervals = {}
        if isinstance(tables, h5py.Group):
            for name, table in tables.items():
                if isinstance(table, h5py.Group) and "start_time" in table:
                    intervals[name] = _table(path, table, f"intervals/{name}")
        behaviour = _behaviour(path, file, rename or {})
        session_id = session_id or _identifier(file, "general/session_id") or path.stem
        subject_id = subject_id or _identifier(file, "general/subject/subject_id") or "unknown"
    firsts = [times[0], *(iv.start.min() for iv in intervals.values() if len(iv))]
    lasts = [times[-1], *(iv.end.max() for iv in intervals.values() if len(iv))]
    firsts += [s.timestamps[0] for s in behaviour.values() if len(s.timestamps)]
    lasts += [s.timestamps[-1] for s in behaviour.values() if len(s.timestamps)]
    # half-open [start, end): nudge the end past the last event so it is inside the domain
    domain = Intervals(np.array([min(firsts)]), np.array([np.nextafter(max(lasts), np.inf)]))
    return Recording(
        brainset_id=brainset_id,
        session_id=session_id,
        subject_id=subject_id,
        unit_ids=unit_ids,
        spike_times=times,
        spike_units=rows,
        domain=domain,
        splits=_splits(path, domain, intervals.get("trials"), fractions, seed),
        behaviour=behaviour,
        intervals=intervals,
    )


def import_nwb(
    nwb_path: str | os.PathLike, out_path: str | os.PathLike, *, overwrite: bool = False, **kwargs
) -> Recording:
    """Convert ``nwb_path`` into a session store file at ``out_path``; ``kwargs`` go to :func:`read_nwb`."""
    recording = read_nwb(nwb_path, **kwargs)
    write_recording(out_path, recording, overwrite=overwrite)
    return recording


def _summary(rec: Recording, out: str) -> str:
    behaviour = ", ".join(f"{k}({', '.join(s.values)})" for k, s in rec.behaviour.items()) or "none"
    splits = ", ".join(f"{k} {v.total_duration():.1f} s" for k, v in rec.splits.items())
    trials = len(rec.intervals["trials"]) if "trials" in rec.intervals else 0
    return (
        f"wrote {out}: session {rec.session_key}, {len(rec.unit_ids)} units, {len(rec.spike_times)} spikes, "
        f"{trials} trials, behaviour: {behaviour}; splits: {splits}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m data_pipeline.nwb_import", description=__doc__.split("\n")[0])
    parser.add_argument("nwb", help="input .nwb file")
    parser.add_argument("out", help="output .h5 session file")
    parser.add_argument("--brainset", required=True, help="dataset name, first part of every unit key")
    parser.add_argument("--session", default=None, help="session id (default: from the file)")
    parser.add_argument("--subject", default=None, help="subject id (default: from the file)")
    parser.add_argument(
        "--split",
        default="0.7,0.1,0.2",
        help="train,valid,test shares of the trials (unless they carry a split column)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the trial split")
    parser.add_argument(
        "--rename", action="append", default=[], metavar="SERIES=NAME/VALUE", help="behaviour naming override"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    try:
        fractions = [float(x) for x in args.split.split(",")]
        rename = dict(item.split("=", 1) for item in args.rename)
    except ValueError:
        parser.error("--split takes three comma-separated numbers and --rename SERIES=NAME/VALUE")
    try:
        rec = import_nwb(
            args.nwb,
            args.out,
            overwrite=args.overwrite,
            brainset_id=args.brainset,
            session_id=args.session,
            subject_id=args.subject,
            fractions=fractions,
            seed=args.seed,
            rename=rename,
        )
    except (DataError, FileExistsError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(_summary(rec, args.out))


if __name__ == "__main__":
    main()
