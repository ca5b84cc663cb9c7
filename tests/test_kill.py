"""``kill -9`` of a training run, between checkpoints and while an async checkpoint is being committed: the same
command resumes from the newest committed step, and the loss curve and final state equal an uninterrupted run's.
The launcher console of these runs is quiet (no INFO lines) unless ``--verbosity`` is given.

Each run is a subprocess of ``python -m experiments.pretrain`` (6 steps of batch 4 on one tiny synthetic session). The
killed runs go through ``tests/parked_launch.py``, which parks them at a known point, so the kill lands there every
time. The runs share a JAX compilation cache, so only the first one compiles.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from possm_jax.train.checkpoint import Checkpointer
from possm_jax.train.logging import SCALARS_FILE, read_scalars

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, EVERY = 6, 2
TMP_SUFFIX = ".orbax-checkpoint-tmp"
TIMEOUT = 240  # seconds for any one run: a hung run fails the test instead of blocking CI
FLAGS = [
    "--config=experiments/configs/pretrain.py:possm_small,quick",
    "--config.data.synthetic=tiny",
    "--config.data.sessions=subject_00_session_000",
    "--config.train.batch_size=4",
    f"--config.train.num_steps={STEPS}",
    "--config.train.log_every=1",
    "--config.train.pack_spikes=False",
    "--config.eval.every=1000",
    f"--config.checkpoint.every={EVERY}",
    "--config.eval.final_split=valid",
    "--config.eval.strict=False",
]


def _env(cache: str, **park: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARK_")}
    env |= {
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": cache,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    return env | park


def _start(workdir, cache: str, **park: str) -> subprocess.Popen:
    """``python -m experiments.pretrain`` on ``workdir``; with ``park`` variables, through the parking driver."""
    os.makedirs(workdir, exist_ok=True)
    driver = ["-m", "tests.parked_launch"] if park else []
    cmd = [sys.executable, *driver, "-m", "experiments.pretrain", *FLAGS, f"--workdir={workdir}"]
    with open(os.path.join(workdir, "console.txt"), "a") as log:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, cwd=ROOT, env=_env(cache, **park), stdout=log, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, workdir) -> None:
    """Waits for a run that must end by itself, with a hard timeout."""
    try:
        rc = proc.wait(timeout=TIMEOUT)
    finally:
        proc.kill()
    with open(os.path.join(workdir, "console.txt")) as f:
        assert rc == 0, f"run in {workdir} exited with {rc}:\n{f.read()[-3000:]}"


def _kill_when(proc: subprocess.Popen, ready) -> None:
    """Polls ``ready()`` (hard timeout), then SIGKILLs ``proc``."""
    deadline = time.time() + TIMEOUT
    try:
        while not ready():
            assert proc.poll() is None, f"the run exited ({proc.returncode}) before it was parked"
            assert time.time() < deadline, "the run never reached its park point"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _committed(workdir) -> list[str]:
    return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def _logged_steps(workdir) -> list[int]:
    """The ``train/loss`` steps in the order they were logged (a resumed run logs its steps again)."""
    with open(os.path.join(workdir, "tb", SCALARS_FILE)) as f:
        return [r["step"] for r in map(json.loads, f) if "train/loss" in r]


def _final_state(workdir):
    return ocp.PyTreeCheckpointer().restore(os.path.join(workdir, "checkpoints", str(STEPS), "state"))


def _snapshot(workdir) -> dict:
    """What a killed run left: checkpoint directory entries, the steps a Checkpointer lists, steps logged, and the
    contents of the uncommitted step 4 if any."""
    tmp = os.path.join(workdir, "checkpoints", f"4{TMP_SUFFIX}")
    return {
        "entries": _committed(workdir),
        "steps": Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).all_steps(),
        "logged": _logged_steps(workdir),
        "uncommitted": sorted(os.listdir(tmp)) if os.path.isdir(tmp) else [],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, and two runs killed with SIGKILL then resumed by the same command."""
    base = tmp_path_factory.mktemp("kill")
    cache = str(base / "jax_cache")
    full, between, saving = base / "full", base / "between", base / "saving"
    _finish(_start(full, cache), full)  # compiles once; the runs below read the cache

    # Killed at step 3, after step 2 was committed (between checkpoints), and while committing step 4.
    killed = {
        between: _start(between, cache, PARK_AFTER_STEP="3", PARK_MARKER=str(base / "b")),
        saving: _start(saving, cache, PARK_COMMIT="4", PARK_MARKER=str(base / "s")),
    }
    _kill_when(killed[between], lambda: os.path.exists(base / "b") and "2" in _committed(between))
    _kill_when(killed[saving], lambda: os.path.exists(base / "s"))
    after_kill = {w: _snapshot(w) for w in killed}

    resumed = {w: _start(w, cache) for w in killed}
    for workdir, proc in resumed.items():
        _finish(proc, workdir)
    return full, between, saving, after_kill


def _assert_same_run(workdir, full) -> None:
    """The loss curve and the final train state (parameters, optimiser) equal the uninterrupted run's."""
    want, got = read_scalars(full / "tb")["train/loss"], read_scalars(workdir / "tb")["train/loss"]
    np.testing.assert_array_equal(got[0], np.arange(1, STEPS + 1))
    np.testing.assert_array_equal(got[1], want[1])
    a, b = _final_state(full), _final_state(workdir)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_kill_between_checkpoints_resumes_from_last_committed_step(runs):
    full, between, _, after_kill = runs
    killed = after_kill[between]
    # Killed after logging step 3 with step 2 committed,
    assert killed["entries"] == ["2"] and killed["steps"] == [2] and killed["logged"] == [1, 2, 3]
    # the same command resumed from step 2 (step 3 logged again) and ran the rest exactly as without the kill.
    assert _logged_steps(between) == [1, 2, 3, 3, 4, 5, 6]
    assert _committed(between) == ["2", "4", "6"]
    _assert_same_run(between, full)


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_kill_while_saving_never_loads_the_uncommitted_step(runs):
    full, _, saving, after_kill = runs
    killed = after_kill[saving]
    # Killed while committing step 4: its items are on disk in the temporary directory, which is not a step,
    assert killed["entries"] == ["2", f"4{TMP_SUFFIX}"] and killed["steps"] == [2]
    assert {"state", "config", "data"} <= set(killed["uncommitted"])
    # so the same command resumed from step 2, not from the uncommitted step 4, and removed the temporary directory.
    logged = killed["logged"]
    assert logged[:4] == [1, 2, 3, 4] and _logged_steps(saving) == logged + [3, 4, 5, 6]
    assert _committed(saving) == ["2", "4", "6"]
    _assert_same_run(saving, full)


def _info_lines(console: str) -> int:
    return len(re.findall(r"^I\d{4} ", console, flags=re.MULTILINE))


def test_launcher_console_is_quiet_unless_verbosity(runs, tmp_path):
    # A whole training run printed the progress bar and the summary, and no absl/orbax INFO line;
    full = runs[0]
    with open(full / "console.txt") as f:
        training = f.read()
    assert _info_lines(training) < 3 and "train: 100%" in training
    assert "valid R² " in training and f"metrics: {full / 'metrics.json'}" in training
    # the evaluation launcher on its checkpoint prints orbax's INFO lines only with --verbosity=0.
    cmd = [
        sys.executable, "-m", "experiments.evaluate", "--config=experiments/configs/evaluate.py",
        f"--config.checkpoint={full / 'checkpoints'}", "--config.data.sessions=subject_00_session_000",
        "--config.split=valid", "--config.strict=False", f"--workdir={tmp_path}",
    ]  # fmt: skip
    env = _env(str(full.parent / "jax_cache"))
    out = {
        flag: subprocess.run([*cmd, *flag], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        for flag in ((), ("--verbosity=0",))
    }
    quiet, verbose = (_info_lines(p.stdout + p.stderr) for p in out.values())
    assert quiet < 3 and verbose >= 10, (quiet, verbose)
