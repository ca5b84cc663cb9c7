"""Device placement: a ``data`` x ``model`` mesh, batches split over ``data``, train state replicated or FSDP-sharded.

The same code runs on one CPU, on ``--num_cpu_devices=8``, on a GPU, and on several hosts: each host feeds its
own slice of the global batch (:func:`host_batch_slice`), and :func:`shard_batch` assembles the global array from the
per-host pieces. With ``model`` > 1 (:func:`make_mesh`), parameters and optimiser state are split over the ``model``
axis by one rule (:func:`fsdp_spec`, :func:`state_shardings`) and XLA gathers them for the forward pass; with
``model`` = 1 (the default) everything is replicated. See ``docs/scaling.md`` for launch recipes.
"""

import math
import os
from collections.abc import Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from data_pipeline import packing
from possm_jax.types import PyTree

DATA_AXIS = "data"
MODEL_AXIS = "model"

MIN_SHARDED_SIZE = 2**12
"""Tensors with fewer elements stay replicated under FSDP: splitting them saves little memory and adds collectives."""

# Environment variables that mean "this process is one of several launched by a cluster manager".
_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def make_mesh(num_devices: int | None = None, model: int = 1) -> Mesh:
    """A ``(data, model)`` mesh over the first ``num_devices`` devices (all devices if None).

    Args:
        num_devices: devices to use; ``data = num_devices // model``.
        model: devices that share one copy of the parameters and optimiser state (FSDP); 1 replicates them.

    Raises:
        ValueError: ``num_devices`` out of range, or not a multiple of ``model``.
    """
    available = jax.device_count()
    num_devices = available if num_devices is None else num_devices
    if not 1 <= num_devices <= available:
        raise ValueError(f"num_devices must be in [1, {available}] (devices visible to JAX), got {num_devices}")
    if model < 1 or num_devices % model:
        raise ValueError(f"model shards must divide the {num_devices} devices, got model={model}")
    return jax.make_mesh(
        (num_devices // model, model),
        (DATA_AXIS, MODEL_AXIS),
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
        devices=jax.devices()[:num_devices],
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (train state, metrics)."""
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def fsdp_spec(shape: tuple[int, ...], model: int, min_size: int = MIN_SHARDED_SIZE) -> P:
    """The FSDP rule: split the largest axis that ``model`` divides over ``model``; replicate the rest.

    Args:
        shape: the array's shape.
        model: size of the ``model`` mesh axis.
        min_size: arrays with fewer elements (biases, norms, scalars) stay replicated.

    Returns:
        ``P()`` or ``P(None, ..., "model")`` with ``"model"`` at the chosen axis (the first of equal sizes).
    """
    if model == 1 or math.prod(shape) < min_size:
        return P()
    axes = [i for i, n in enumerate(shape) if n % model == 0]
    if not axes:
        return P()
    axis = max(axes, key=lambda i: (shape[i], -i))
    return P(*([None] * axis), MODEL_AXIS)


def state_shardings(tree: PyTree, mesh: Mesh, min_size: int = MIN_SHARDED_SIZE) -> PyTree:
    """A ``NamedSharding`` per leaf of ``tree`` (a train state) by :func:`fsdp_spec` on ``mesh``'s ``model`` axis.

    The rule depends only on a leaf's shape, so an optimiser moment gets its parameter's sharding.
    """
    model = mesh.shape[MODEL_AXIS]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), model, min_size)), tree)


def place_state(tree: PyTree, mesh: Mesh, min_size: int = MIN_SHARDED_SIZE) -> PyTree:
    """Places a train state on ``mesh`` by :func:`state_shardings` (replicated when ``model`` is 1)."""
    return jax.device_put(tree, state_shardings(tree, mesh, min_size))


def _local_data_shards(mesh: Mesh) -> int:
    """How many ``data`` slices of the batch this host's devices hold (devices along ``model`` share one)."""
    rows = {i for i, row in enumerate(mesh.devices) for d in np.ravel(row) if d.process_index == jax.process_index()}
    return len(rows)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Builds global batch arrays split over ``data`` from this host's slice.

    Args:
        batch: this host's rows of the global batch (all of it on a single host), each with leading axis b_host.
        mesh: the data mesh.

    Returns:
        Global arrays of leading size ``b_host * process_count``.
    """
    sharding = data_sharded(mesh)
    local_shards = _local_data_shards(mesh)
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] % local_shards:
            raise ValueError(
                f"batch[{name!r}]: leading (batch) size {value.shape[:1]} must be a multiple of this host's "
                f"{local_shards} devices along the data axis; choose a global batch divisible by the device count"
            )
        out[name] = jax.make_array_from_process_local_data(sharding, value)
    return out


def pack_host_batch(batch: Mapping[str, np.ndarray], mesh: Mesh, min_width: int = 0) -> dict[str, np.ndarray]:
    """Packs this host's spike tokens per local data shard (:func:`data_pipeline.packing.pack_spikes`).

    Every host must build global arrays of one shape, so with several hosts the packed width is the maximum of the
    hosts' needs; ``spike_window`` counts rows of the global batch. The width is at least ``min_width``: a training
    loop passes the widest batch so far, so it compiles only when the packed size grows (a handful of times in a
    run) rather than for every size a batch happens to need.
    """
    local_shards = _local_data_shards(mesh)
    width = max(int(min_width), packing.packed_width(batch, local_shards))
    if jax.process_count() > 1:
        width = int(np.max(multihost_utils.process_allgather(np.int32(width))))
    b_host = np.asarray(batch["spike_mask"]).shape[0]
    return packing.pack_spikes(batch, local_shards, width=width, window_offset=jax.process_index() * b_host)


def host_batch_slice(global_batch: int) -> slice:
    """The rows of the global batch this host loads (contiguous, equal per host)."""
    count, index = jax.process_count(), jax.process_index()
    if global_batch % jax.device_count():
        raise ValueError(
            f"global batch {global_batch} must be divisible by the {jax.device_count()} devices "
            f"({count} hosts); change the batch size"
        )
    per_host = global_batch // count
    return slice(index * per_host, (index + 1) * per_host)


def data_shard() -> tuple[int, int]:
    """``(shard_index, shard_count)`` for this host's data loader (e.g. grain ``ShardOptions``)."""
    return jax.process_index(), jax.process_count()


def cluster_env_present(environ: Mapping[str, str] | None = None) -> bool:
    """True when a cluster launcher set up several processes (coordinator address, SLURM or Open MPI)."""
    environ = os.environ if environ is None else environ
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    return any(int(environ.get(name, "1") or "1") > 1 for name in _CLUSTER_ENV[1:])


def maybe_initialize_distributed(
    environ: Mapping[str, str] | None = None,
    *,
    coordinator_address: str = "",
    num_processes: int = 1,
    process_id: int = 0,
    num_cpu_devices: int = 0,
    timeout_seconds: int = 300,
) -> bool:
    """Sets JAX up for this process; call first in a launcher, before anything touches the JAX backend.

    With ``coordinator_address`` this process joins a job started by hand (``num_processes`` launches, ids
    ``0 .. num_processes - 1``, e.g. several on one machine); otherwise ``jax.distributed.initialize()`` runs iff
    :func:`cluster_env_present`, and JAX reads the coordinator, process count and id from the cluster's environment.
    CPU collectives between processes go through gloo.

    Args:
        environ: the environment to inspect (``os.environ`` if None).
        coordinator_address: ``host:port`` of process 0; empty: detect a cluster.
        num_processes: processes in a hand-started job.
        process_id: this process's id in a hand-started job.
        num_cpu_devices: simulated CPU devices per process (0: JAX's default of one).
        timeout_seconds: how long to wait for the other processes to connect.

    Returns:
        Whether ``jax.distributed`` was initialised.

    Raises:
        ValueError: ``num_processes`` or ``process_id`` out of range.
    """
    if num_cpu_devices:
        jax.config.update("jax_num_cpu_devices", num_cpu_devices)
    if coordinator_address:
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(
                f"--process_id={process_id} with --num_processes={num_processes}: need num_processes >= 1 and "
                f"0 <= process_id < num_processes"
            )
        kwargs = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    elif cluster_env_present(environ):
        kwargs = {}
    else:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs, initialization_timeout=timeout_seconds)
    return True
