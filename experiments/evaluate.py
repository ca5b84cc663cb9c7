r"""Evaluate a checkpoint on whole trials: the metrics of its task per session, JSON and plots.

    python -m experiments.evaluate --config=experiments/configs/evaluate.py \
        --config.checkpoint=runs/pretrain/checkpoints --config.data.dir=runs/demo/data --workdir=runs/eval

The checkpoint's saved config says its task (``task.name``, reaching without one) and the task's settings. Writes
``metrics.json`` to ``--workdir`` and the task's report: reaching R² (chunk-causal and strictly causal) with
``traces.png`` and ``r2_per_session.png``; handwriting accuracy and top-3 accuracy with ``handwriting_eval.json``
and ``handwriting_confusion.png``; speech PER with ``speech_eval.json`` and ``speech_examples.png`` (decoded vs true
phoneme strings).
"""

import os
from typing import Any

from ml_collections import ConfigDict

from possm_jax.train import corpus, objectives
from possm_jax.train.logging import write_metrics_json
from possm_jax.train.model_io import load_checkpoint


def evaluate_checkpoint(config: ConfigDict, workdir: str) -> dict[str, Any]:
    """Evaluates ``config.checkpoint`` on ``config.split`` of the selected sessions; returns the metrics written."""
    if not config.checkpoint:
        raise ValueError("checkpoint: not set; pass --config.checkpoint=<training workdir>/checkpoints")
    model, units, sessions, saved, step = load_checkpoint(config.checkpoint, None if config.step < 0 else config.step)
    objective = objectives.get(saved)
    recs = corpus.select(objectives.load_corpus(_data_section(config, saved)), config.data.sessions)
    unknown = [r.session_key for r in recs if r.session_key not in sessions]
    if unknown:
        raise ValueError(
            f"data.sessions: the checkpoint never saw sessions {unknown}; finetune on them first "
            f"(experiments/finetune.py) or select others with --config.data.sessions"
        )
    options = objectives.EvalOptions(config.batch_size, config.strict, num_traces=3)
    maps = corpus.vocab_maps(recs, units, sessions)
    result = objective.evaluate(model, ConfigDict(saved), recs, maps, config.split, options)
    os.makedirs(workdir, exist_ok=True)
    metrics = {"checkpoint": config.checkpoint, "step": step, config.split: objective.summary(result)}
    write_metrics_json(os.path.join(workdir, "metrics.json"), metrics)
    objective.write_report(result, workdir)
    return metrics


def _data_section(config: ConfigDict, saved: dict[str, Any]) -> dict[str, Any]:
    """``config.data``, or the checkpoint's data directory / synthetic corpus when neither is given."""
    data = config.data.to_dict()
    if not data["dir"] and not data["synthetic"]:
        data.update(dir=saved["data"]["dir"], synthetic=saved["data"]["synthetic"])
    return data


if __name__ == "__main__":
    from experiments.launch import launch

    launch(evaluate_checkpoint, "Evaluation config file.", "runs/eval")
