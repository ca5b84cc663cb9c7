"""What the handwriting and speech launcher configs share: the pretrain config turned into a binned-task run.

A task run is the reaching run's config with a ``task`` section (the task config's fields, see
:mod:`possm_jax.train.objectives` and ``docs/tasks.md``), binned inputs, ``num_latents = 4`` latents with one
in-chunk self-attention layer, the count read-in, and ``tokenizer.bin_width`` as the one chunk-length field.
"""

import ml_collections

from experiments.configs import pretrain
from possm_jax.train import objectives


def get_task_config(
    arg: str, name: str, bin_width: float, batch_size: int, context_chunks: int = 0, lr_scale: float = 1.0
) -> ml_collections.ConfigDict:
    """The launcher config of task ``name`` for ``arg = preset[,quick]``.

    Args:
        arg: a model preset, optionally with ``,quick`` (a short CPU run).
        name: ``"handwriting"`` or ``"speech"``.
        bin_width: the bin and chunk length in seconds.
        batch_size: examples per training batch (the peak learning rate is linear in it).
        context_chunks: the decoder's context in chunks (0: the preset's).
        lr_scale: multiplies the peak learning rate.

    Raises:
        ValueError: unknown preset or option.
    """
    c = pretrain.get_config(arg)
    quick = arg.partition(",")[2] == "quick"
    c.data.synthetic, c.data.sessions = name, "all"
    c.tokenizer.bin_width = bin_width  # the only chunk-length field: task config, model and evaluation read it
    c.model.num_latents, c.model.depth, c.model.input_kind = 4, 1, "binned"
    c.model.count_readin = True  # a linear read-in of each chunk's counts beside the attention (docs/tasks.md)
    c.model.context_chunks = context_chunks or c.model.context_chunks
    c.train.batch_size, c.train.num_steps = batch_size, 100 if quick else 2000
    c.train.lr_scale = lr_scale
    c.train.unit_dropout, c.train.pack_spikes = False, False  # reaching's spike-token augmentation and packing
    c.eval.every = c.checkpoint.every = 50 if quick else 500
    c.eval.strict = False  # the strictly causal variant is reaching's
    c.transfer.partial = True  # finetuning from a reaching checkpoint builds this task's model (new readout, ...)
    with c.unlocked():
        c.task = objectives.task_section(name)
    c.model.tasks = ml_collections.ConfigDict(dict(objectives.get(c).model_config(c).tasks))  # shown, as saved
    c.lock()
    return c
