"""Checkpoints: train state + data iterator state + config in one orbax ``CheckpointManager``.

Each step directory holds three items: ``state`` (the :class:`~possm_jax.train.state.TrainState` pytree, orbax
``StandardSave``), ``data`` (the grain iterator position, one file per process, :class:`DataHandler`) and ``config``
(JSON). Retention keeps the ``keep`` newest steps plus the ``keep_best`` best by a validation metric passed to
:meth:`Checkpointer.save`.

Restoring takes a *target* state whose leaves carry the shardings wanted now (see :func:`abstract_state`), so a run
saved on 8 devices restores onto 1 and vice versa, and one saved by 2 processes restores in 1 and vice versa.
Failures raise :class:`CheckpointError` (a ValueError) naming the directory, the step and what to do; a config
that differs from the saved one raises :class:`ConfigMismatchError` naming the differing keys.

A step is written into ``<step>.orbax-checkpoint-tmp`` and renamed to ``<step>`` once every item is on disk, so a
run killed while saving (even ``kill -9``) leaves only that temporary directory: it is never listed or restored, and
a writable :class:`Checkpointer` removes it when it opens the directory. Restoring the newest step skips damaged ones
(a file deleted or truncated) with a :class:`CheckpointWarning` naming them, renames them to ``<step>.damaged`` unless
read-only, and uses the newest step that reads.

:class:`PreemptionFlag` turns SIGTERM into a flag the loop polls: save, then exit (all processes, if any got it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from grain import checkpoint as grain_checkpoint
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from orbax.checkpoint import checkpoint_managers as policies

from possm_jax.train.sharding import replicated
from possm_jax.types import PyTree

ITEMS = ("state", "data", "config")


class CheckpointError(ValueError):
    """A checkpoint directory is missing, empty, incomplete or corrupt."""


class ConfigMismatchError(CheckpointError):
    """The config stored in a checkpoint disagrees with the one in use."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint step was skipped in favour of an earlier one."""


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b.c": leaf}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten_config(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], sections: Iterable[str] = ()) -> list[str]:
    """Dotted keys whose values differ, or that exist on one side only.

    Args:
        saved: the config stored in the checkpoint.
        current: the config in use.
        sections: top-level keys to compare (e.g. ``("model",)``); empty compares everything.
    """
    # JSON round trip so tuples vs lists and int vs float keys compare as they were stored.
    a = flatten_config(json.loads(json.dumps(saved)))
    b = flatten_config(json.loads(json.dumps(current)))
    sections = tuple(sections)

    def wanted(key: str) -> bool:
        return not sections or any(key == s or key.startswith(f"{s}.") for s in sections)

    keys = sorted(k for k in set(a) | set(b) if wanted(k))
    return [k for k in keys if a.get(k, "<missing>") != b.get(k, "<missing>")]


def abstract_state(state: PyTree, mesh: Mesh) -> PyTree:
    """Shape/dtype structs of ``state`` replicated on ``mesh``: the restore target for this device count."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def _as_abstract(x: Any) -> jax.ShapeDtypeStruct:
    """A restore target leaf: kept if abstract; else its shape, dtype and sharding (host arrays: first device)."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    sharding = getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


class DataHandler(grain_checkpoint.CheckpointHandler):
    """grain's iterator handler, also readable by a different number of processes.

    Each process saves its iterator's position in its own file. Every process is at the same index of its own slice of
    the same global batches (its rows of batch ``k``), so when this process's file is missing (the run was saved with
    another process count) any saved file holds the right position, provided the global batch size is unchanged.
    """

    def restore(self, directory: epath.Path, item: Any = None, args: Any = None) -> Any:
        """Moves the iterator (``args.item``) to the saved position."""
        own = directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        saved = sorted(directory.glob("process_*-of-*.json"))
        if own.exists() or not saved:
            return super().restore(directory, item, args)
        positions = {json.dumps(json.loads(f.read_text()), sort_keys=True) for f in saved}
        if len(positions) > 1:
            raise CheckpointError(f"data item in {directory}: processes saved different positions {sorted(positions)}")
        iterator = item or args.item
        iterator.set_state(json.loads(positions.pop()))
        iterator.start_prefetch()  # as grain's own restore does
        return iterator


@ocp.args.register_with_handler(DataHandler, for_save=True)
@dataclasses.dataclass
class DataSave(ocp.args.CheckpointArgs):
    """Orbax args: save the grain iterator ``item``'s position with :class:`DataHandler`."""

    item: Any


@ocp.args.register_with_handler(DataHandler, for_restore=True)
@dataclasses.dataclass
class DataRestore(ocp.args.CheckpointArgs):
    """Orbax args: move the grain iterator ``item`` to the saved position with :class:`DataHandler`."""

    item: Any


class Checkpointer:
    """Saves and restores train state, data-iterator state and config under ``directory``.

    Args:
        directory: where step directories go (created on the first save unless ``read_only``).
        keep: how many of the newest steps to keep.
        best_metric: name of the metric (passed to :meth:`save`) that ranks checkpoints; None keeps newest only.
        best_mode: "max" (R², accuracy) or "min" (loss).
        keep_best: how many best checkpoints to keep in addition to the newest ``keep``.
        read_only: open an existing directory for restoring only (evaluation); it must exist.
        async_save: write in a background thread (call :meth:`wait` before exiting; :meth:`close` does).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep: int = 3,
        best_metric: str | None = None,
        best_mode: str = "max",
        keep_best: int = 1,
        read_only: bool = False,
        async_save: bool = True,
    ):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        if read_only and not os.path.isdir(self.directory):
            raise CheckpointError(f"checkpoint directory {self.directory} does not exist; pass the --workdir of a run")
        self.best_metric, self.best_mode, self.read_only = best_metric, best_mode, read_only
        keepers: list[Any] = [policies.LatestN(n=keep)]
        if best_metric is not None:
            keepers.append(
                policies.BestN(
                    get_metric_fn=self._metric_value,
                    reverse=best_mode == "min",
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keepers),
            # best_fn also makes orbax write each step's metrics to disk, so retention survives a restart.
            best_fn=self._metric_value if best_metric is not None else None,
            best_mode=best_mode,
            read_only=read_only,
            create=not read_only,
            enable_async_checkpointing=async_save,
            # A run killed while saving leaves <step>.orbax-checkpoint-tmp: never a step, removed on reopening.
            cleanup_tmp_directories=not read_only,
        )
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "data": DataHandler(),
            "config": ocp.JsonCheckpointHandler(),
        }
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def _metric_value(self, metrics: Mapping[str, Any]) -> float:
        return float(metrics[self.best_metric])

    # ------------------------------------------------------------------------------------------------------ save
    def save(
        self,
        step: int,
        state: PyTree,
        config: Mapping[str, Any],
        data_iterator: Any = None,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Writes ``step`` (overwriting nothing: an existing step is left as is).

        Args:
            step: the train step (``int(state.step)``).
            state: the train state pytree.
            config: the run's config as plain JSON-serialisable mappings (``ConfigDict.to_dict()``).
            data_iterator: a grain iterator whose position is saved (None: not saved).
            metrics: validation metrics; ``best_metric`` must be among them for best-by-validation retention.
        """
        if self.best_metric is not None and metrics is not None and self.best_metric not in metrics:
            raise ValueError(f"metrics: missing best_metric {self.best_metric!r}; got {sorted(metrics)}")
        items = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(dict(config))}
        if data_iterator is not None:
            items["data"] = DataSave(data_iterator)
        self._manager.save(int(step), args=ocp.args.Composite(**items), metrics=dict(metrics) if metrics else None)

    def wait(self) -> None:
        """Blocks until background writes are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for writes and releases the manager."""
        self._manager.close()

    # ---------------------------------------------------------------------------------------------------- query
    def all_steps(self) -> list[int]:
        """Saved steps, ascending."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest saved step, or None."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def best_step(self) -> int | None:
        """The saved step with the best ``best_metric``, or None if no step has metrics."""
        if self.best_metric is None:
            raise ValueError("best_step: this Checkpointer was created without best_metric")
        self._manager.reload()
        return self._manager.best_step()

    # -------------------------------------------------------------------------------------------------- restore
    def _read_step(self, step: int | None, read: Callable[[int], Any]) -> Any:
        """``read(step)``, or with ``step`` None ``read`` of the newest step that can be read.

        Damaged steps newer than that one are skipped with a :class:`CheckpointWarning` and, unless read-only, renamed
        to ``<step>.damaged``: orbax never writes a step at or below the newest listed one, so a damaged step left in
        place would keep the resumed run from saving until it passed it.
        """
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(
                f"no checkpoint in {self.directory}; train first, or point --workdir at a run that saved one"
            )
        if step is not None and step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; saved steps: {steps}")
        errors: dict[int, CheckpointError] = {}
        for candidate in [step] if step is not None else reversed(steps):
            try:
                value = read(candidate)
            except ConfigMismatchError:
                raise
            except CheckpointError as e:
                errors[candidate] = e
                continue
            for bad, error in errors.items():
                self._skip_damaged(bad, candidate, error)
            return value
        if step is not None:
            raise CheckpointError(f"{errors[step]} Restore another step (saved: {steps}) or delete it.")
        raise CheckpointError(
            f"no checkpoint in {self.directory} can be read (steps {steps}); the newest: {errors[steps[-1]]} Delete "
            f"{self.directory} (or use another --workdir) to start over."
        )

    def _skip_damaged(self, bad: int, used: int, error: CheckpointError) -> None:
        """Warns that step ``bad`` is skipped for ``used``; moves it aside unless read-only (the chief does)."""
        where = ""
        if not self.read_only and jax.process_index() == 0:
            path = os.path.join(self.directory, str(bad))
            aside, n = f"{path}.damaged", 1
            while os.path.exists(aside):
                aside, n = f"{path}.damaged{n}", n + 1
            os.rename(path, aside)
            self._manager.reload()
            where = f"; moved it to {aside} (delete it once inspected)"
        warnings.warn(
            f"checkpoint step {bad} in {self.directory} is damaged, using step {used} instead{where}. {error}",
            CheckpointWarning,
            stacklevel=4,
        )

    def restore_config(self, step: int | None = None) -> dict[str, Any]:
        """The config saved with ``step``; None: the newest step that can be read (see :meth:`restore`)."""
        return self._read_step(step, self._read_config)

    def _read_config(self, step: int) -> dict[str, Any]:
        return self._read(step, {"config": ocp.args.JsonRestore()})["config"]

    def _read(self, step: int, items: dict[str, Any]) -> Any:
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax raises many types for unreadable files; all mean the same to the user
            detail = " ".join(str(e).split())[:500]
            raise CheckpointError(
                f"checkpoint step {step} ({os.path.join(self.directory, str(step))}) could not be read "
                f"({type(e).__name__}: {detail}): it is incomplete or corrupt, or was saved from a different model."
            ) from e

    def restore(
        self,
        target: PyTree,
        step: int | None = None,
        config: Mapping[str, Any] | None = None,
        compare: Iterable[str] = ("model",),
        data_iterator: Any = None,
        partial: bool = False,
    ) -> PyTree:
        """Restores a train state onto ``target``'s shardings (and the data iterator in place).

        Args:
            target: a state or :func:`abstract_state` with the structure, shapes and shardings to restore into.
            step: the step to restore; None: the newest that can be read (newer damaged steps: see the module doc).
            config: the config in use; if given, the saved config's ``compare`` sections must equal it.
            compare: top-level config sections that must match (empty: all).
            data_iterator: a grain iterator to move to the saved position (needs ``data`` saved with the step).
            partial: ``target`` is a dict of some of the saved state's top-level fields (e.g. ``params`` and ``rest``
                for inference); only those are read.

        Raises:
            CheckpointError: no checkpoint that can be read. ConfigMismatchError: the configs differ.
        """

        def read(candidate: int) -> PyTree:
            if config is not None:
                diff = config_differences(self._read_config(candidate), config, compare)
                if diff:
                    raise ConfigMismatchError(
                        f"checkpoint step {candidate} in {self.directory} was saved with a different config: {diff} "
                        f"differ. Use the checkpoint's config (its config item), or start a new --workdir for a new "
                        f"model."
                    )
            items = {"state": ocp.args.StandardRestore(jax.tree.map(_as_abstract, target), strict=not partial)}
            if data_iterator is not None:
                items["data"] = DataRestore(data_iterator)
            return self._read(candidate, items)["state"]

        return self._read_step(step, read)


class PreemptionFlag:
    """Set by SIGTERM (cluster pre-emption, ``kill``); the training loop polls it, saves, then exits.

    Use as a context manager, which installs the handler and restores the previous one on exit::

        with PreemptionFlag() as preempted:
            for batch in data:
                ...
                if preempted.requested:
                    ckpt.save(...); ckpt.wait(); break
    """

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM,)):
        self.signals = tuple(signals)
        self.signal_name: str | None = None
        self._received = 0  # the signal number this process got, 0 for none
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        self._received = signum
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        """Whether to save and stop. With several processes it is True on all of them once any got a signal, so
        they save and stop at the same step; reading it is then a collective: every process reads it once per step."""
        received = self._received
        if jax.process_count() > 1:
            received = int(np.max(multihost_utils.process_allgather(np.int32(received))))
        if received and self.signal_name is None:
            self.signal_name = f"{signal.Signals(received).name} (to another process)"
        return bool(received)

    def __enter__(self) -> PreemptionFlag:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
