"""Random model inputs in the batch layout of ``data_pipeline.batch_layout`` (numpy), and their per-chunk split."""

import numpy as np


def random_batch(
    seed: int,
    *,
    batch: int = 2,
    chunks: int = 20,
    spikes: int = 96,
    queries: int = 24,
    num_units: int = 30,
    num_sessions: int = 3,
    num_tasks: int = 1,
    bin_width: float = 0.05,
    empty_chunks: tuple[int, ...] = (3,),
) -> dict[str, np.ndarray]:
    """A window batch: every row has a random number of real spikes (some chunks empty) and padded queries."""
    rng = np.random.default_rng(seed)
    out = {
        "spike_unit": np.zeros((batch, spikes), np.int32),
        "spike_chunk": np.full((batch, spikes), chunks - 1, np.int32),
        "spike_time": np.zeros((batch, spikes), np.float32),
        "spike_value": np.zeros((batch, spikes), np.float32),
        "spike_mask": np.zeros((batch, spikes), bool),
        "chunk_mask": np.ones((batch, chunks), bool),
        "session": rng.integers(1, num_sessions, batch).astype(np.int32),
        "query_chunk": np.zeros((batch, queries), np.int32),
        "query_time": np.zeros((batch, queries), np.float32),
        "query_task": rng.integers(0, num_tasks, (batch, queries)).astype(np.int32),
        "query_mask": np.zeros((batch, queries), bool),
    }
    allowed = np.setdiff1d(np.arange(chunks), empty_chunks)
    for row in range(batch):
        n = int(rng.integers(spikes // 2, spikes - 4))
        chunk = np.sort(rng.choice(allowed, n))
        time = rng.uniform(0.0, bin_width, n)
        order = np.lexsort((time, chunk))
        out["spike_chunk"][row, :n] = chunk[order]
        out["spike_time"][row, :n] = time[order]
        out["spike_unit"][row, :n] = rng.integers(1, num_units, n)
        out["spike_value"][row, :n] = rng.uniform(0.0, 3.0, n)
        out["spike_mask"][row, :n] = True
        nq = queries - 3
        t_abs = np.sort(rng.uniform(0.0, chunks * bin_width, nq))
        qc = np.minimum((t_abs // bin_width).astype(np.int32), chunks - 1)
        out["query_chunk"][row, :nq] = qc
        out["query_time"][row, :nq] = np.clip(t_abs - qc * bin_width, 0.0, np.nextafter(bin_width, 0))
        out["query_mask"][row, :nq] = True
    return out


def chunk_inputs(batch: dict[str, np.ndarray], j: int, spikes: int, queries: int):
    """Streaming inputs for chunk ``j``: (chunk dict [b, spikes], queries dict [b, queries], query positions)."""
    b = batch["session"].shape[0]
    token_keys = ("spike_unit", "spike_time", "spike_value", "spike_mask")
    chunk = {k: np.zeros((b, spikes), batch[k].dtype) for k in token_keys}
    qry = {
        "session": batch["session"],
        "query_time": np.zeros((b, queries), np.float32),
        "query_task": np.zeros((b, queries), np.int32),
        "query_mask": np.zeros((b, queries), bool),
    }
    positions = []
    for row in range(b):
        sel = np.flatnonzero(batch["spike_mask"][row] & (batch["spike_chunk"][row] == j))
        for k in token_keys:
            chunk[k][row, : len(sel)] = batch[k][row, sel]
        qsel = np.flatnonzero(batch["query_mask"][row] & (batch["query_chunk"][row] == j))
        for k in ("query_time", "query_task", "query_mask"):
            qry[k][row, : len(qsel)] = batch[k][row, qsel]
        positions.append(qsel)
    return chunk, qry, positions
