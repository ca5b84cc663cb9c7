"""Writing a synthetic corpus to disk: one ``.h5`` per session (brainsets layout) plus a ``dataset.json`` manifest
(``python -m data_pipeline.synth`` is the command line)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from tqdm import tqdm

from data_pipeline.recording import Recording
from data_pipeline.store_writer import write_recording
from data_pipeline.synth import handwriting, speech
from data_pipeline.synth.presets import get_preset
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
    count, sessions = corpus(preset, seed)
    return write_sessions(sessions, out, {"preset": preset, "seed": seed}, count, overwrite)


def write_sessions(
    sessions: Iterator[tuple[SessionSpec, Recording]],
    out: str,
    header: dict,
    count: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Writes generated sessions into ``out`` (one ``.h5`` each) with a ``dataset.json`` manifest of ``header``
    plus the session entries; returns the manifest. ``count`` only sizes the progress bar."""
    os.makedirs(out, exist_ok=True)
    entries = []
    for spec, rec in tqdm(sessions, total=count, desc=f"synth {header.get('preset', '')}", unit="session"):
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
    manifest = {**header, "sessions": entries}
    with open(os.path.join(out, "dataset.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest
