"""Pretraining across processes on CPU: 2 processes x 4 simulated devices, started through the launcher on localhost
(gloo collectives), train exactly like 1 process x 8 devices on the same global batches; checkpoints move between
the two layouts; SIGTERM to one process saves and stops both.

Four launches, each under a hard timeout: A (1 process, the reference), B (2 processes, SIGTERM to process 0 during
the first step's compilation), C (1 process resuming B's checkpoint), D (2 processes resuming A's step-2 checkpoint).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from data_pipeline.pipeline import make_train_iterator
from data_pipeline.tokenize import TokenizerConfig
from possm_jax.train import corpus
from possm_jax.train.checkpoint import Checkpointer
from possm_jax.train.logging import read_scalars

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, DEVICES, BATCH = 4, 8, 8
SESSION = "subject_00_session_000"  # one session of the tiny corpus: less to prepare and evaluate
LAUNCH_TIMEOUT = 240  # seconds per launch: a hung collective fails the test instead of hanging CI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _command(workdir: str, num_processes: int, process_id: int, port: int) -> list[str]:
    """The launcher command for one process of a tiny possm_small run (no dropout, every step logged)."""
    cmd = [
        sys.executable, "-m", "experiments.pretrain",
        "--config=experiments/configs/pretrain.py:possm_small,quick",
        f"--config.data.sessions={SESSION}", "--config.model.dim=32", "--config.model.backbone.hidden=32",
        "--config.model.ffn_dropout=0.0", f"--config.train.batch_size={BATCH}",
        f"--config.train.num_steps={STEPS}", "--config.train.log_every=1", "--config.train.pack_spikes=False",
        "--config.eval.every=1000", "--config.checkpoint.every=2", "--config.eval.final_split=valid",
        "--noconfig.eval.strict", f"--workdir={workdir}", f"--num_cpu_devices={DEVICES // num_processes}",
    ]  # fmt: skip
    if num_processes > 1:
        cmd += [f"--coordinator_address=localhost:{port}", f"--num_processes={num_processes}"]
        cmd += [f"--process_id={process_id}"]
    return cmd


def _start(workdir: str, num_processes: int, cache: str | None = None) -> list[subprocess.Popen]:
    """Starts the processes of one run; ``cache``: a persistent compilation cache, for single-process runs only (a
    2-process run reading its step back from the cache hung in the first step once, jax 0.10.2 on CPU)."""
    os.makedirs(workdir, exist_ok=True)
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the test run's shared cache (conftest) too
    if cache:
        env |= {"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    procs = []
    for i in range(num_processes):
        with open(os.path.join(workdir, f"process_{i}.log"), "w") as log:  # the child keeps its own descriptor
            cmd = _command(workdir, num_processes, i, port)
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _log(workdir: str, i: int) -> str:
    with open(os.path.join(workdir, f"process_{i}.log")) as f:
        return f.read()


def _finish(procs: list[subprocess.Popen], workdir: str, deadline: float) -> None:
    """Waits for every process; kills them all (by pid) and fails if any runs past ``deadline`` or fails."""
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.wait()
        pytest.fail(f"launch in {workdir} ran past its {LAUNCH_TIMEOUT} s limit; log tail: {_log(workdir, 0)[-2000:]}")
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i} exited with {p.returncode}: {_log(workdir, i)[-3000:]}"


def _run(workdir: str, num_processes: int, cache: str | None = None) -> None:
    _finish(_start(workdir, num_processes, cache), workdir, time.monotonic() + LAUNCH_TIMEOUT)


def _losses(workdir: str) -> dict[int, float]:
    steps, values = read_scalars(os.path.join(workdir, "tb"))["train/loss"]
    return dict(zip(steps.tolist(), values.tolist(), strict=True))


def _params(workdir: str, step: int) -> list[np.ndarray]:
    """The saved parameters of ``step`` as host arrays (read without a target: any device layout)."""
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    reader = ocp.PyTreeCheckpointer()
    tree = reader.metadata(path).item_metadata.tree
    restored = reader.restore(path, restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree))
    return jax.tree.leaves(restored["params"])


def _assert_same_training(workdir: str, reference: str, steps: list[int]) -> None:
    got, want = _losses(workdir), _losses(reference)
    assert sorted(got) == steps
    np.testing.assert_allclose([got[s] for s in steps], [want[s] for s in steps], rtol=1e-5, atol=1e-5)
    for a, b in zip(_params(workdir, STEPS), _params(reference, STEPS), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _sigterm_process_0_during_first_step(procs: list[subprocess.Popen], workdir: str, deadline: float) -> None:
    """Sends SIGTERM to process 0 once its progress bar is up (the signal handler goes in right after it)."""
    while "train:" not in _log(workdir, 0):
        assert time.monotonic() < deadline and procs[0].poll() is None, _log(workdir, 0)[-3000:]
        time.sleep(0.2)
    time.sleep(2.0)  # the handler is installed; the first step compiles for several seconds
    procs[0].send_signal(signal.SIGTERM)


def test_hosts_read_disjoint_slices_that_cover_the_global_batch():
    recs = corpus.select(corpus.load_corpus("", "tiny"), "all")
    units, sessions = corpus.build_vocabs(recs)
    maps, tok = corpus.vocab_maps(recs, units, sessions), TokenizerConfig()

    def rows(shard_index: int, shard_count: int) -> list[bytes]:
        """The first two batches of one host, one ``bytes`` per window (all its arrays)."""
        it = make_train_iterator(
            recs, maps, tok, BATCH // shard_count, 0, prefetch=0, shard_index=shard_index, shard_count=shard_count
        )
        out = []
        for batch in (next(it), next(it)):
            out += [
                b"".join(np.ascontiguousarray(v[i]).tobytes() for v in batch.values())
                for i in range(len(batch["session"]))
            ]
        return out

    whole, first, second = rows(0, 1), rows(0, 2), rows(1, 2)
    assert len(set(whole)) == len(whole) == 2 * BATCH  # distinct windows
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(whole)


@pytest.mark.skipif(sys.platform != "linux", reason="gloo over localhost TCP")
def test_two_processes_train_like_one_resume_across_layouts_and_stop_together(tmp_path):
    ref, preempted, resumed = str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "two_to_one")
    cache = str(tmp_path / "compilation_cache")  # the two single-process runs compile the same programs
    # Given the reference: 1 process x 8 devices, STEPS steps, checkpoints at steps 2 and 4,
    _run(ref, 1, cache)

    # When 2 processes x 4 devices start the same run and process 0 alone gets SIGTERM during the first step,
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    procs = _start(preempted, 2)
    _sigterm_process_0_during_first_step(procs, preempted, deadline)
    _finish(procs, preempted, deadline)
    # then both processes saved the same step and stopped cleanly (exit status 0),
    stopped = Checkpointer(os.path.join(preempted, "checkpoints"), read_only=True).latest_step()
    assert stopped is not None and stopped < STEPS
    assert f"SIGTERM: saved step {stopped}" in _log(preempted, 0)
    assert not os.path.exists(os.path.join(preempted, "metrics.json"))

    # and 1 process resumes that 2-process checkpoint: the whole curve and the final parameters match the reference.
    shutil.copytree(preempted, resumed)
    _run(resumed, 1, cache)
    _assert_same_training(resumed, ref, list(range(1, STEPS + 1)))

    # When 2 processes resume the reference's step-2 checkpoint, they continue it exactly too.
    one_to_two = str(tmp_path / "one_to_two")
    shutil.copytree(os.path.join(ref, "checkpoints", "2"), os.path.join(one_to_two, "checkpoints", "2"))
    _run(one_to_two, 2)
    _assert_same_training(one_to_two, ref, [3, 4])
