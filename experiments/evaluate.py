r"""Evaluate a checkpoint on whole trials: R² per session (chunk-causal and strictly causal), JSON and plots.

    python -m experiments.evaluate --config=experiments/configs/evaluate.py \
        --config.checkpoint=runs/pretrain/checkpoints --config.data.dir=runs/demo/data --workdir=runs/eval

Writes ``metrics.json``, ``traces.png`` and ``r2_per_session.png`` to ``--workdir``.
"""

import os
from typing import Any

from ml_collections import ConfigDict

from data_pipeline.tokenize import TokenizerConfig
from possm_jax.eval.evaluate import evaluate
from possm_jax.train import corpus
from possm_jax.train.logging import write_metrics_json
from possm_jax.train.model_io import load_checkpoint
from possm_jax.train.plots import plot_r2_per_session, plot_traces
from possm_jax.train.run_config import tokenizer_config


def evaluate_checkpoint(config: ConfigDict, workdir: str) -> dict[str, Any]:
    """Evaluates ``config.checkpoint`` on ``config.split`` of the selected sessions; returns the metrics written."""
    if not config.checkpoint:
        raise ValueError("checkpoint: not set; pass --config.checkpoint=<training workdir>/checkpoints")
    model, units, sessions, saved, step = load_checkpoint(config.checkpoint, None if config.step < 0 else config.step)
    tok: TokenizerConfig = tokenizer_config(ConfigDict(saved))
    recs = corpus.select(
        corpus.load_corpus(config.data.dir, config.data.synthetic, config.data.seed), config.data.sessions
    )
    unknown = [r.session_key for r in recs if r.session_key not in sessions]
    if unknown:
        raise ValueError(
            f"data.sessions: the checkpoint never saw sessions {unknown}; finetune on them first "
            f"(experiments/finetune.py) or select others with --config.data.sessions"
        )
    result = evaluate(
        model, recs, corpus.vocab_maps(recs, units, sessions), tok, config.split, config.batch_size, config.strict, 3
    )
    os.makedirs(workdir, exist_ok=True)
    metrics = {
        "checkpoint": config.checkpoint,
        "step": step,
        config.split: {k: v for k, v in result.items() if k != "traces"},
    }
    write_metrics_json(os.path.join(workdir, "metrics.json"), metrics)
    session, traces = next(iter(result["traces"].items()))
    if traces:
        plot_traces(
            traces, os.path.join(workdir, "traces.png"), titles=[f"{session} trial {i}" for i in range(len(traces))]
        )
    plot_r2_per_session(result["r2"], os.path.join(workdir, "r2_per_session.png"))
    return metrics


if __name__ == "__main__":
    from experiments.launch import launch

    launch(evaluate_checkpoint, "Evaluation config file.", "runs/eval")
