"""Data-parallel placement (SPEC 4): a 1-D ``data`` mesh, batches split on it, train state replicated.

The same code runs on one CPU, on ``--jax_num_cpu_devices=8``, on a GPU, and on several hosts: each host feeds its
own slice of the global batch (:func:`host_batch_slice`), and :func:`shard_batch` assembles the global array from the
per-host pieces.
"""

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

# Environment variables that mean "this process is one of several launched by a cluster manager".
_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A mesh with one ``data`` axis over the first ``num_devices`` devices (all devices if None)."""
    available = jax.device_count()
    num_devices = available if num_devices is None else num_devices
    if not 1 <= num_devices <= available:
        raise ValueError(f"num_devices must be in [1, {available}] (devices visible to JAX), got {num_devices}")
    return jax.make_mesh(
        (num_devices,),
        (DATA_AXIS,),
        axis_types=(jax.sharding.AxisType.Auto,),
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


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Builds global batch arrays split over ``data`` from this host's slice.

    Args:
        batch: this host's rows of the global batch (all of it on a single host), each with leading axis b_host.
        mesh: the data mesh.

    Returns:
        Global arrays of leading size ``b_host * process_count``.
    """
    sharding = data_sharded(mesh)
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] % local_devices:
            raise ValueError(
                f"batch[{name!r}]: leading (batch) size {value.shape[:1]} must be a multiple of this host's "
                f"{local_devices} devices; choose a global batch divisible by the device count"
            )
        out[name] = jax.make_array_from_process_local_data(sharding, value)
    return out


def pack_host_batch(batch: Mapping[str, np.ndarray], mesh: Mesh, min_width: int = 0) -> dict[str, np.ndarray]:
    """Packs this host's spike tokens per local device (:func:`data_pipeline.packing.pack_spikes`).

    Every host must build global arrays of one shape, so with several hosts the packed width is the maximum of the
    hosts' needs; ``spike_window`` counts rows of the global batch. The width is at least ``min_width``: a training
    loop passes the widest batch so far, so it compiles only when the packed size grows (a handful of times in a
    run) rather than for every size a batch happens to need.
    """
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    width = max(int(min_width), packing.packed_width(batch, local_devices))
    if jax.process_count() > 1:
        width = int(np.max(multihost_utils.process_allgather(np.int32(width))))
    b_host = np.asarray(batch["spike_mask"]).shape[0]
    return packing.pack_spikes(batch, local_devices, width=width, window_offset=jax.process_index() * b_host)


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


def maybe_initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
    """Calls ``jax.distributed.initialize()`` iff :func:`cluster_env_present`; call first in a launcher.

    JAX detects the coordinator, process count and id from the cluster's environment. Returns whether it initialised.
    """
    if not cluster_env_present(environ):
        return False
    jax.distributed.initialize()
    return True
