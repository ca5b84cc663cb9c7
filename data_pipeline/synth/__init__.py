"""Synthetic data: a calibrated multi-session reaching corpus plus handwriting- and speech-like tasks.

``generate(get_preset("demo"), seed)`` yields ``(SessionSpec, Recording)`` pairs; ``python -m data_pipeline.synth``
writes them to disk.
"""

from data_pipeline.synth.presets import PRESETS, ReachingPreset, get_preset
from data_pipeline.synth.sessions import SessionSpec, generate, generate_session, plan_subject, session_specs

__all__ = [
    "PRESETS",
    "ReachingPreset",
    "SessionSpec",
    "generate",
    "generate_session",
    "get_preset",
    "plan_subject",
    "session_specs",
]
