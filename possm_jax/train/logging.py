"""Run observability: TensorBoard scalars, console progress with ETA, a scalar log for plots, metrics JSON.

:class:`RunLogger` writes every scalar three ways: TensorBoard (``tensorboardX``, no TensorFlow needed), one JSON
line per call in ``scalars.jsonl`` (read back by :func:`read_scalars` for the training-curve plot), and a short
postfix on a ``tqdm`` bar that shows steps/s and the ETA. In multi-host runs only the chief (process 0) should log:
pass ``enabled=jax.process_index() == 0``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

SCALARS_FILE = "scalars.jsonl"


def _to_builtin(value: Any) -> Any:
    """numpy / jax scalars and arrays -> Python floats, ints and lists (JSON-serialisable)."""
    if isinstance(value, Mapping):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_builtin(v) for v in value]
    if hasattr(value, "tolist"):
        return np.asarray(value).tolist()
    return value


class RunLogger:
    """Logs scalars to TensorBoard and ``scalars.jsonl`` under ``logdir`` and shows a progress bar.

    Args:
        logdir: directory for event files and the scalar log (created).
        total_steps: length of the progress bar (for the ETA).
        initial_step: where a resumed run starts.
        enabled: False makes every method a no-op (non-chief hosts).
        desc: progress bar label.
    """

    def __init__(
        self,
        logdir: str | os.PathLike,
        total_steps: int,
        initial_step: int = 0,
        enabled: bool = True,
        desc: str = "train",
    ):
        self.enabled = enabled
        self.logdir = os.fspath(logdir)
        self._writer = None
        self._scalars = None
        if enabled:
            os.makedirs(self.logdir, exist_ok=True)
            self._writer = SummaryWriter(self.logdir)
            self._scalars = open(os.path.join(self.logdir, SCALARS_FILE), "a", encoding="utf-8")
        self._bar = tqdm(total=total_steps, initial=initial_step, desc=desc, unit="step", disable=not enabled)

    def log(self, step: int, scalars: Mapping[str, Any], prefix: str = "") -> None:
        """Writes ``scalars`` (name -> number) at ``step``; names become ``prefix + name`` (e.g. ``"val/"``)."""
        if not self.enabled:
            return
        values = {f"{prefix}{k}": float(v) for k, v in scalars.items()}
        for name, value in values.items():
            self._writer.add_scalar(name, value, global_step=int(step))
        self._scalars.write(json.dumps({"step": int(step), **values}) + "\n")
        self._scalars.flush()
        shown = {k: f"{v:.4g}" for k, v in values.items() if math.isfinite(v)}
        self._bar.set_postfix(shown, refresh=False)

    def advance(self, steps: int = 1) -> None:
        """Moves the progress bar (rate and ETA follow)."""
        self._bar.update(steps)

    def message(self, text: str) -> None:
        """Prints a line above the progress bar."""
        if self.enabled:
            self._bar.write(text)

    def close(self) -> None:
        """Flushes and closes the writers and the bar."""
        self._bar.close()
        if self.enabled:
            self._writer.close()
            self._scalars.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_scalars(logdir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``scalars.jsonl`` -> ``{name: (steps, values)}``, each sorted by step; later lines win on repeated steps."""
    path = os.path.join(os.fspath(logdir), SCALARS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {SCALARS_FILE} in {logdir}; was the run logged with RunLogger?")
    series: dict[str, dict[int, float]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                step = record.pop("step")
                for name, value in record.items():
                    series.setdefault(name, {})[step] = value
    return {
        name: (np.asarray(sorted(points)), np.asarray([points[s] for s in sorted(points)]))
        for name, points in series.items()
    }


def write_metrics_json(path: str | os.PathLike, metrics: Mapping[str, Any]) -> None:
    """Writes ``metrics`` as indented JSON atomically (temporary file, then rename), so readers never see half."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(_to_builtin(metrics), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
