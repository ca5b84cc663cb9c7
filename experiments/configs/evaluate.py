r"""Config for evaluating a checkpoint (``experiments/evaluate.py``).

    python -m experiments.evaluate --config=experiments/configs/evaluate.py \
        --config.checkpoint=runs/pretrain/checkpoints --config.data.dir=runs/demo/data --workdir=runs/eval

``step`` < 0 evaluates the best-by-validation step (newest if none has metrics). Sessions must be in the
checkpoint's vocabulary. ``data.dir`` or the synthetic corpus ``data.synthetic`` say what to evaluate on; with
neither, the checkpoint's own training data. ``strict`` adds the strictly causal R² of reaching models; the
handwriting and speech tasks ignore it.
"""

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """The evaluation config (``arg`` unused)."""
    del arg
    c = ml_collections.ConfigDict()
    c.checkpoint = ""
    c.step = -1
    c.data = dict(dir="", synthetic="", seed=0, sessions="all")
    c.split = "test"
    c.batch_size = 16
    c.strict = True
    return c
