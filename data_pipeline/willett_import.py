"""Convert the public human-BCI files of Willett et al. into session store files (see ``docs/data_human.md``).

CLI::

  python -m data_pipeline.willett_import handwriting t5.2019.05.08/singleLetters.mat OUT.h5
  python -m data_pipeline.willett_import speech train/t12.2022.06.14.mat test/t12.2022.06.14.mat OUT.h5 \\
      [--phoneme_dict=cmudict.txt] [--features=tx1,spikePow] [--channels=0:128] [--split=train]

Readers: :func:`data_pipeline.willett_handwriting.read_handwriting` and
:func:`data_pipeline.willett_speech.read_speech`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from data_pipeline.errors import DataError
from data_pipeline.recording import Recording
from data_pipeline.store_writer import write_recording
from data_pipeline.willett_handwriting import GO_BIN, read_handwriting
from data_pipeline.willett_speech import FEATURES, read_speech

NO_PHONEMES = (
    "no phoneme labels: the session holds the sentence text only, and CTC training needs phoneme labels; "
    "pass --phoneme_dict=<CMU-style pronunciation file> to add them"
)


def summary(rec: Recording, out: str) -> str:
    """What was written, one line per topic."""
    trials = rec.intervals["trials"]
    splits = ", ".join(f"{k} {int(v.contains((trials.start + trials.end) / 2).sum())}" for k, v in rec.splits.items())
    lines = [
        f"wrote {out}: session {rec.session_key}, {len(rec.unit_ids)} units, {len(rec.spike_times)} spikes, "
        f"{len(trials)} trials ({splits}), {len(rec.intervals['blocks'])} blocks",
    ]
    if "text" in trials.columns:
        phonemes = rec.intervals.get("phonemes")
        lines.append(f"phoneme labels: {len(phonemes)} phonemes" if phonemes is not None else NO_PHONEMES)
    return "\n".join(lines)


def channel_range(text: str) -> range:
    """``"a:b"`` as ``range(a, b)``."""
    try:
        start, stop = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--channels={text}: pass start:stop, e.g. 0:128") from None
    return range(start, stop)


def parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per file kind."""
    root = argparse.ArgumentParser(prog="python -m data_pipeline.willett_import", description=__doc__.split("\n")[0])
    kinds = root.add_subparsers(dest="kind", required=True)
    hand = kinds.add_parser("handwriting", help="a singleLetters.mat file")
    hand.add_argument("mat", help="input singleLetters.mat")
    hand.add_argument("--go_bin", type=int, default=GO_BIN, help="cube bin of the go cue")
    speech = kinds.add_parser("speech", help="the competition files of one session")
    speech.add_argument("mat", nargs="+", help="input t12.*.mat files of one session (train/ and test/ copies)")
    speech.add_argument("--split", choices=("train", "valid", "test"), help="split of every file (default: folder)")
    speech.add_argument("--features", default="tx1,spikePow", help=f"comma-separated among {','.join(FEATURES)}")
    speech.add_argument("--channels", default="0:128", help="electrode columns start:stop (0:128 is area 6v)")
    speech.add_argument("--phoneme_dict", default=None, help="CMU-style pronunciation file for phoneme labels")
    for sub in (hand, speech):
        sub.add_argument("out", help="output .h5 session file")
        sub.add_argument("--brainset", default=None, help="dataset name, first part of every unit key")
        sub.add_argument("--session", default=None, help="session id (default: from the file name)")
        sub.add_argument("--subject", default=None, help="participant id")
        sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return root


def read(args: argparse.Namespace) -> Recording:
    """The recording the parsed arguments ask for."""
    ids = {"brainset_id": args.brainset, "session_id": args.session, "subject_id": args.subject}
    ids = {k: v for k, v in ids.items() if v is not None}
    if args.kind == "handwriting":
        return read_handwriting(args.mat, go_bin=args.go_bin, **ids)
    return read_speech(
        args.mat,
        split=args.split,
        features=args.features.split(","),
        channels=channel_range(args.channels),
        phoneme_dict=args.phoneme_dict,
        **ids,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    args = parser().parse_args(argv)
    try:
        rec = read(args)
        write_recording(args.out, rec, overwrite=args.overwrite)
    except (DataError, FileExistsError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(summary(rec, args.out))


if __name__ == "__main__":
    main()
