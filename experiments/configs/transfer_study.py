r"""Config for the transfer study (``experiments/transfer_study.py``, docs/training.md "Transfer study").

    python -m experiments.transfer_study --config=experiments/configs/transfer_study.py:small --workdir=runs/transfer

``arg``: ``full`` (every method × 5 data fractions × 3 seeds, the paper's comparison) or ``small`` (``make
transfer``: fewer fractions, one seed, short runs; minutes on two CPU cores). ``pretrained`` empty: the study
generates the ``transfer`` synthetic corpus and pretrains on it first; otherwise its cells start from that
checkpoint directory and read ``data.dir``.

``handwriting``: transfer from reaching to another task. The cells train on the synthetic handwriting corpus with
the handwriting launcher config (``task``), from scratch or finetuned (``ft``, ``full``) from the reaching checkpoint,
at 10 %, 20 % and 100 % of the training trials; the score is test accuracy instead of R².
"""

import ml_collections

METHODS = ("scratch", "ui", "lora", "ft", "full")
CASES = ("heldout_session", "heldout_subject")


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """The study config for ``arg`` = ``full`` or ``small``.

    Raises:
        ValueError: unknown ``arg``.
    """
    if arg not in ("full", "small", "handwriting"):
        raise ValueError(f"transfer_study config {arg!r} unknown; use 'full', 'small' or 'handwriting'")
    small = arg == "small"
    c = ml_collections.ConfigDict()
    c.model = "possm_small"  # model preset of pretraining and of the scratch cells
    c.data = dict(dir="", synthetic="transfer", seed=0)  # dir empty: <workdir>/data is generated from the preset
    c.pretrained = ""  # a checkpoint directory; empty: pretrain into <workdir>/pretrain first
    c.pretrain = dict(steps=400 if small else 2000, batch_size=32, lr_scale=2.0)
    c.cases = CASES  # data.sessions selections, each transferred to separately
    c.methods = METHODS
    c.fractions = (0.1, 1.0) if small else (0.05, 0.1, 0.2, 0.5, 1.0)
    c.seeds = (0,) if small else (0, 1, 2)
    c.steps = 80 if small else 400  # train steps per cell
    c.batch_size = 32
    # Peak-LR factors: the frozen-model methods train a few thousand parameters and take larger steps.
    c.lr_scale = dict(scratch=2.0, ui=4.0, lora=4.0, ft=2.0, full=2.0)
    c.lora_rank = 32
    c.strict = False  # also evaluate strictly causal (twice the evaluation time)
    c.task = ""  # "": reaching cells on the held-out sessions; "handwriting": cells of that launcher config
    if arg == "handwriting":
        c.task, c.cases, c.fractions, c.seeds = "handwriting", ("all",), (0.1, 0.2, 1.0), (0,)
        c.methods, c.steps, c.lr_scale = ("scratch", "ft", "full"), 1000, dict(scratch=2.0, ft=2.0, full=2.0)
    c.lock()
    return c
