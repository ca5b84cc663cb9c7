"""Convert an NWB file (DANDI and friends) into a session store file, with plain h5py (no pynwb at runtime).

What is read (SPEC 3.1):
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

Splits: whole trials go to ``valid``/``test`` (deterministic per ``seed``), the rest of the session to ``train``;
without trials the session is cut in time into consecutive train/valid/test blocks.

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
from data_pipeline.store_reader import as_text_array
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
    order = np.argsort(times, kind="stable")  # NWB stores spikes unit by unit; we store them in time order
    return ids, times[order].astype(np.float64), rows[order]


def _table(path: Path, table: h5py.Group, field: str) -> Intervals:
    """An NWB TimeIntervals table as Intervals with its 1-D numeric/string columns (ragged ones skipped)."""
    with errors.reading(path, field):
        start = table["start_time"][()]
        end = table["stop_time"][()]
    errors.check_intervals(path, field, start, end)
    columns = {}
    for key, node in table.items():
        ragged = f"{key}_index" in table or key.endswith("_index")
        if key in ("id", "start_time", "stop_time") or ragged or not isinstance(node, h5py.Dataset):
            continue
        text = h5py.check_string_dtype(node.dtype) is not None or node.dtype.kind == "S"
        if node.shape != start.shape or not (text or node.dtype.kind in "fiub"):
            continue  # references, compound and multi-dimensional columns are not carried over
        with errors.reading(path, f"{field}/{key}"):
            columns[key] = as_text_array(node[()]) if text else node[()]
    order = np.argsort(start, kind="stable")
    return Intervals(
        start[order].astype(np.float64), end[order].astype(np.float64), {k: v[order] for k, v in columns.items()}
    )


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
    """(timestamps [t] f8, data [t, ...] in SI units, sampling rate or None) of one NWB TimeSeries."""
    with errors.reading(path, field):
        data = group["data"][()]
        scale = float(group["data"].attrs.get("conversion", 1.0))
        shift = float(group["data"].attrs.get("offset", 0.0))
        if "timestamps" in group:
            timestamps, rate = group["timestamps"][()], None
        else:
            rate = float(group["starting_time"].attrs["rate"])
            timestamps = float(group["starting_time"][()]) + np.arange(len(data), dtype=np.float64) / rate
    if data.dtype.kind not in "fiub":
        raise DataError(path, f"{field}/data", f"has dtype {data.dtype}", "store behaviour as numbers")
    fix = f"store '{field}/timestamps' as sorted finite float seconds"
    errors.check_float_vector(path, f"{field}/timestamps", timestamps, fix=fix)
    errors.check_sorted(path, f"{field}/timestamps", timestamps, fix=fix)
    errors.check_same_length(path, f"{field}/data", data, len(timestamps), f"{field}/timestamps")
    if scale != 1.0 or shift != 0.0:
        data = data * scale + shift
    return timestamps.astype(np.float64), data, rate


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


def _merge(start: np.ndarray, end: np.ndarray) -> Intervals:
    """Union of intervals [i] as sorted disjoint intervals."""
    if len(start) == 0:
        return Intervals(np.zeros(0), np.zeros(0))
    order = np.argsort(start, kind="stable")
    start, reach = start[order], np.maximum.accumulate(end[order])
    first = np.flatnonzero(np.r_[True, start[1:] > reach[:-1]])
    last = np.r_[first[1:] - 1, len(start) - 1]
    return Intervals(start[first], reach[last])


def _subtract(a: Intervals, b: Intervals) -> Intervals:
    """``a`` minus ``b``, both sorted and disjoint."""
    starts, ends = [], []
    for s, e in zip(a.start, a.end, strict=True):
        j0, j1 = np.searchsorted(b.end, s, side="right"), np.searchsorted(b.start, e, side="left")
        cursor = s
        for bs, be in zip(b.start[j0:j1], b.end[j0:j1], strict=True):
            if bs > cursor:
                starts.append(cursor)
                ends.append(bs)
            cursor = max(cursor, be)
        if cursor < e:
            starts.append(cursor)
            ends.append(e)
    return Intervals(np.array(starts, dtype=np.float64), np.array(ends, dtype=np.float64))


def make_splits(
    domain: Intervals, trials: Intervals | None, fractions: Sequence[float], seed: int
) -> dict[str, Intervals]:
    """Train/valid/test domains: whole trials to valid/test, all remaining time to train.

    Args:
      domain: the session's domain.
      trials: the trials, or None to cut ``domain`` in time into consecutive train/valid/test blocks.
      fractions: (train, valid, test) shares of the trials (or of the time), summing to 1.
      seed: which trials go where is a seeded permutation, so the same seed gives the same splits.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(
            f"fractions={fractions.tolist()}: give three non-negative (train, valid, test) shares summing to 1"
        )
    if trials is None or len(trials) == 0:
        t0, t1 = domain.start[0], domain.end[-1]
        cuts = t0 + np.cumsum(np.r_[0.0, fractions]) * (t1 - t0)
        cuts[-1] = t1
        # domain ∩ block = domain − (domain − block)
        blocks = [
            _subtract(domain, _subtract(domain, Intervals(cuts[i : i + 1], cuts[i + 1 : i + 2]))) for i in range(3)
        ]
        return dict(zip(("train", "valid", "test"), blocks, strict=True))
    n = len(trials)
    n_valid, n_test = int(round(n * fractions[1])), int(round(n * fractions[2]))
    order = np.random.default_rng(seed).permutation(n)
    test = _merge(trials.start[order[:n_test]], trials.end[order[:n_test]])
    pick = order[n_test : n_test + n_valid]
    valid = _subtract(_merge(trials.start[pick], trials.end[pick]), test)
    return {"train": _subtract(_subtract(domain, valid), test), "valid": valid, "test": test}


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
      fractions: (train, valid, test) shares of the trials; see :func:`make_splits`.
      seed: seed of the trial assignment.
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
        splits=make_splits(domain, intervals.get("trials"), fractions, seed),
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
    parser.add_argument("--split", default="0.7,0.1,0.2", help="train,valid,test shares of the trials")
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
