"""Writes a synthetic corpus to disk: one ``.h5`` per session (brainsets layout) plus a ``dataset.json`` manifest.

Usage::

  python -m data_pipeline.synth --preset=demo --out=runs/data/demo [--seed=0] [--overwrite]

Presets: ``tiny``, ``demo``, ``single``, ``bench`` (reaching), ``handwriting``, ``speech``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator

from tqdm import tqdm

from data_pipeline.recording import Recording
from data_pipeline.store_writer import write_recording
from data_pipeline.synth import handwriting, speech
from data_pipeline.synth.presets import PRESETS, get_preset
from data_pipeline.synth.sessions import SessionSpec, generate, session_specs

OTHER_PRESETS = {
    "handwriting": (handwriting.NUM_SESSIONS, handwriting.generate_handwriting),
    "speech": (speech.NUM_SESSIONS, speech.generate_speech),
}


def corpus(preset: str, seed: int) -> tuple[int, Iterator[tuple[SessionSpec, Recording]]]:
    """(number of sessions, generator of sessions) for a preset name."""
    if preset in OTHER_PRESETS:
        count, make = OTHER_PRESETS[preset]
        return count, make(seed)
    reaching = get_preset(preset)
    return len(session_specs(reaching)), generate(reaching, seed)


def write_corpus(preset: str, out: str, seed: int = 0, overwrite: bool = False) -> dict:
    """Generates every session of ``preset`` into ``out`` and returns the manifest it writes."""
    os.makedirs(out, exist_ok=True)
    count, sessions = corpus(preset, seed)
    entries = []
    for spec, rec in tqdm(sessions, total=count, desc=f"synth {preset}", unit="session"):
        name = f"{rec.session_id}.h5"
        write_recording(os.path.join(out, name), rec, overwrite=overwrite)
        entries.append(
            {
                "file": name,
                "brainset_id": rec.brainset_id,
                "session_id": rec.session_id,
                "subject_id": rec.subject_id,
                "task": spec.task,
                "heldout": spec.heldout,
                "num_units": len(rec.unit_ids),
                "num_spikes": len(rec.spike_times),
                "duration_s": float(rec.domain.end[-1] - rec.domain.start[0]),
            }
        )
    manifest = {"preset": preset, "seed": seed, "sessions": entries}
    with open(os.path.join(out, "dataset.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_pipeline.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=sorted([*PRESETS, *OTHER_PRESETS]))
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing session files")
    args = parser.parse_args(argv)
    manifest = write_corpus(args.preset, args.out, args.seed, args.overwrite)
    print(f"wrote {len(manifest['sessions'])} sessions and dataset.json to {args.out}")


if __name__ == "__main__":
    main()
