r"""``make demo``: synthetic corpus → pretrain → unit identification on a held-out session vs from scratch → report.

    python -m experiments.demo --workdir=runs/demo [--steps_scale=1.0]

1. Generates the ``demo`` synthetic corpus into ``<workdir>/data`` (skipped if present): 10 pretraining sessions
   (centre-out and random-target) and one held-out centre-out session.
2. Pretrains ``possm_small`` on the 10 sessions (``<workdir>/pretrain``).
3. Unit identification (UI) on the held-out session with only ``--fraction`` (20 %) of its training time: the
   pretrained model is frozen, only the new session's unit and session rows train (``<workdir>/finetune_ui``).
4. The same session trained from scratch with the same little data and steps (``<workdir>/scratch``).
5. Writes ``<workdir>/metrics.json`` (test R², chunk-causal and strictly causal), prints a table, and leaves plots
   and TensorBoard logs (``tb/``) in each sub-directory.

Sized for about ten minutes on two CPU cores; ``--steps_scale`` multiplies every step count (longer runs score
higher). Each stage resumes from its checkpoints, so an interrupted demo continues where it stopped.
"""

import os
from typing import Any

from absl import app, flags

from data_pipeline.synth.writer import write_corpus
from experiments.configs import finetune as finetune_config
from experiments.configs import pretrain as pretrain_config
from experiments.launch import quiet_logging, run_or_exit
from possm_jax.train.logging import write_metrics_json
from possm_jax.train.loop import train_and_evaluate

PRETRAIN_STEPS = 600
TRANSFER_STEPS = 150
BATCH = 32


def _common(config: Any, data_dir: str, steps: int) -> Any:
    config.data.dir = data_dir
    config.train.num_steps = steps
    config.train.log_every = 10
    config.train.batch_size = BATCH
    config.eval.every = config.checkpoint.every = max(1, steps // 2)
    return config


def run_demo(workdir: str, steps_scale: float = 1.0, fraction: float = 0.2) -> dict[str, Any]:
    """Runs every stage (see module docstring); returns the summary written to ``metrics.json``."""
    data_dir = os.path.join(workdir, "data")
    if not os.path.exists(os.path.join(data_dir, "dataset.json")):
        write_corpus("demo", data_dir, seed=0)
    pre_steps = max(2, round(PRETRAIN_STEPS * steps_scale))
    ft_steps = max(2, round(TRANSFER_STEPS * steps_scale))

    pre = _common(pretrain_config.get_config("possm_small"), data_dir, pre_steps)
    pre.data.sessions = "pretrain"
    pre.train.lr_scale = 2.0  # a few hundred steps: twice the linearly scaled reference peak
    pretrained = train_and_evaluate(pre, os.path.join(workdir, "pretrain"))

    ui = _common(finetune_config.get_config("ui"), data_dir, ft_steps)
    ui.data.train_fraction = fraction
    ui.transfer.checkpoint = os.path.join(workdir, "pretrain", "checkpoints")
    ui.train.lr_scale = 4.0  # only a few thousand parameters train: a larger step is safe and converges in time
    transferred = train_and_evaluate(ui, os.path.join(workdir, "finetune_ui"))

    scratch = _common(pretrain_config.get_config("possm_small"), data_dir, ft_steps)
    scratch.data.sessions = "heldout"
    scratch.data.train_fraction = fraction
    from_scratch = train_and_evaluate(scratch, os.path.join(workdir, "scratch"))

    def row(result: dict[str, Any]) -> dict[str, Any]:
        test = result["test"]
        return {
            "test_r2_mean": test["r2_mean"],
            "test_r2_sd": test["r2_sd"],
            "test_strict_r2_mean": test.get("strict_r2_mean"),
            "steps": result["step"],
            "wall_seconds": result["wall_seconds"],
            "windows_per_second": result["windows_per_second"],
            "compile_seconds": result["compile_seconds"],
        }

    summary = {
        "pretrain (10 sessions)": row(pretrained),
        f"UI on held-out ({fraction:.0%} data)": row(transferred),
        f"scratch on held-out ({fraction:.0%} data)": row(from_scratch),
    }
    write_metrics_json(os.path.join(workdir, "metrics.json"), summary)
    print(f"\n{'run':<34} {'test R²':>14} {'strict R²':>10} {'steps':>6} {'wall s':>7} {'win/s':>7}")
    for name, r in summary.items():
        print(
            f"{name:<34} {r['test_r2_mean']:>7.3f} ± {r['test_r2_sd']:.3f} {r['test_strict_r2_mean']:>10.3f} "
            f"{r['steps']:>6d} {r['wall_seconds']:>7.0f} {r['windows_per_second'] or 0:>7.0f}"
        )
    print(f"\nmetrics: {os.path.join(workdir, 'metrics.json')}; TensorBoard: tensorboard --logdir={workdir}")
    return summary


def main() -> None:
    """absl entry point (flags defined only when launched)."""
    workdir = flags.DEFINE_string("workdir", "runs/demo", "Output directory.")
    scale = flags.DEFINE_float("steps_scale", 1.0, "Multiplies every stage's number of steps.")
    fraction = flags.DEFINE_float("fraction", 0.2, "Fraction of the held-out session's training time used.")

    def run(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        quiet_logging()  # keep the console to progress bars, warnings and the summary
        run_or_exit(lambda: run_demo(workdir.value, scale.value, fraction.value))

    app.run(run)


if __name__ == "__main__":
    main()
