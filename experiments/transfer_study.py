r"""Transfer study: {scratch, UI, LoRA, FT, full} × training-data fractions × seeds on held-out sessions and subjects.

    python -m experiments.transfer_study --config=experiments/configs/transfer_study.py:small --workdir=runs/transfer

1. Without ``pretrained``: writes the ``transfer`` synthetic corpus to ``<workdir>/data`` and pretrains on its
   pretraining sessions (``<workdir>/pretrain``).
2. Every cell (case, method, fraction, seed) trains in its own ``<workdir>/cells/<case>/<method>/f<frac>_s<seed>``
   and writes ``cell.json`` when done. A finished cell is never run again; an unfinished one (the study was killed
   inside it) is deleted and run from its start, so re-running the same command resumes the study.
3. Writes ``study.json`` (every cell and the mean/sd over seeds), ``study.md`` (test R² per method and fraction,
   trainable parameters, wall time) and ``data_efficiency.png`` (test R² against training data, bands over seeds).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import ml_collections
from flax import nnx

from data_pipeline.synth.writer import write_corpus
from experiments import transfer_report
from experiments.configs import pretrain as pretrain_config
from possm_jax.possm import POSSM
from possm_jax.train import corpus as corpus_lib
from possm_jax.train import objectives, transfer
from possm_jax.train.logging import write_metrics_json
from possm_jax.train.loop import train_and_evaluate
from possm_jax.train.setup import _pretrained_model  # the model and mask a finetuning run starts from

CellFn = Callable[[ml_collections.ConfigDict, str], dict[str, Any]]


def _base_config(
    study: ml_collections.ConfigDict, data_dir: str, steps: int, batch: int, task: str = ""
) -> ml_collections.ConfigDict:
    if task:  # the task's launcher config on its own corpus (synthetic unless its config names a directory)
        c = importlib.import_module(f"experiments.configs.{task}").get_config(study.model)
    else:
        c = pretrain_config.get_config(study.model)
        c.data.dir = data_dir
    c.train.num_steps, c.train.batch_size, c.train.log_every = steps, batch, 10
    c.eval.every = c.checkpoint.every = max(1, steps // 2)
    c.eval.strict = study.strict
    return c


def cell_config(study: ml_collections.ConfigDict, data_dir: str, base: str, cell: dict) -> ml_collections.ConfigDict:
    """The run config of one cell (``cell``: case, method, fraction, seed)."""
    c = _base_config(study, data_dir, study.steps, study.batch_size, study.task)
    c.data.sessions, c.data.train_fraction = cell["case"], cell["fraction"]
    c.train.seed, c.train.lr_scale = cell["seed"], study.lr_scale[cell["method"]]
    if cell["method"] != "scratch":
        c.transfer.checkpoint, c.transfer.mode = base, cell["method"]
        c.transfer.unfreeze_step, c.transfer.lora_rank = study.steps // 2, study.lora_rank
    return c


def trainable_count(config: ml_collections.ConfigDict) -> int:
    """Parameters a cell trains at its first step (ft: before unfreezing; everything after)."""
    objective = objectives.get(config)
    recs = corpus_lib.select(objectives.load_corpus(config.data), config.data.sessions)
    if config.transfer.checkpoint:
        _, _, _, model, mask = _pretrained_model(config, recs, objective)
    else:
        units, sessions = corpus_lib.build_vocabs(recs)
        cfg = objective.model_config(config)
        model = nnx.eval_shape(lambda: POSSM(cfg, len(units), len(sessions), rngs=nnx.Rngs(0)))
        mask = transfer.full_mask(nnx.state(model, nnx.Param))
    return transfer.trainable_count(nnx.state(model, nnx.Param), mask)


def train_cell(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains one cell; returns its row of ``study.json`` (empty if the run was stopped by a signal)."""
    result = train_and_evaluate(config, workdir)
    if result.get("preempted"):
        return {}
    test = result[config.eval.final_split]
    _, score = objectives.get(config).score(test, config, result["step"])  # R² (reaching), accuracy (handwriting)
    return {
        "test_score": score,
        "test_strict_r2": test.get("strict_r2_mean"),
        "steps": result["step"],
        "wall_seconds": result["wall_seconds"],
        "trainable": trainable_count(config),
    }


def cells(study: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """Every cell in run order (cheap methods first within a case and fraction)."""
    return [
        {"case": case, "method": method, "fraction": float(fraction), "seed": int(seed)}
        for case in study.cases
        for fraction in study.fractions
        for seed in study.seeds
        for method in study.methods
    ]


def cell_dir(workdir: str, cell: dict[str, Any]) -> str:
    """``<workdir>/cells/<case>/<method>/f<fraction>_s<seed>``."""
    return os.path.join(workdir, "cells", cell["case"], cell["method"], f"f{cell['fraction']:g}_s{cell['seed']}")


def run_cells(
    study: ml_collections.ConfigDict, workdir: str, data_dir: str, base: str, run_cell: CellFn = train_cell
) -> list[dict[str, Any]] | None:
    """Runs the unfinished cells; returns every cell's row, or None if a run was stopped by a signal."""
    rows = []
    for cell in cells(study):
        where = cell_dir(workdir, cell)
        done = os.path.join(where, "cell.json")
        if not os.path.exists(done):
            if os.path.isdir(where):  # killed inside this cell: start it over
                shutil.rmtree(where)
            row = run_cell(cell_config(study, data_dir, base, cell), where)
            if not row:
                return None
            write_metrics_json(done, {**cell, **row})
        with open(done, encoding="utf-8") as f:
            rows.append(json.load(f))
    return rows


def prepare(study: ml_collections.ConfigDict, workdir: str) -> tuple[str, str]:
    """``(data directory, pretrained checkpoint directory)``, generating and pretraining when not given."""
    data_dir = study.data.dir or os.path.join(workdir, "data")
    needed = not (study.task and study.pretrained)  # by pretraining and reaching cells; task cells read their own
    if needed and not study.data.dir and not os.path.exists(os.path.join(data_dir, "dataset.json")):
        write_corpus(study.data.synthetic, data_dir, seed=study.data.seed)
    if study.pretrained:
        return data_dir, study.pretrained
    p = study.pretrain
    pre = _base_config(study, data_dir, p.steps, p.batch_size)
    pre.data.sessions, pre.train.lr_scale = "pretrain", p.lr_scale
    pre_dir = os.path.join(workdir, "pretrain")
    if not os.path.exists(os.path.join(pre_dir, "metrics.json")):
        train_and_evaluate(pre, pre_dir)
    return data_dir, os.path.join(pre_dir, "checkpoints")


def run_study(study: ml_collections.ConfigDict, workdir: str, run_cell: CellFn = train_cell) -> dict[str, Any]:
    """The whole study (module docstring); returns what ``study.json`` holds."""
    data_dir, base = prepare(study, workdir)
    rows = run_cells(study, workdir, data_dir, base, run_cell)
    if rows is None:
        return {"preempted": True}
    report = transfer_report.write_report(rows, workdir, base, "test accuracy" if study.task else "test R²")
    print(report["markdown"])
    return report


if __name__ == "__main__":
    from experiments.launch import launch

    launch(run_study, "Transfer study config file.", "runs/transfer")
