"""XLA compiler options for the hot programs this library jits: the train step and the streaming step.

On the CPU backend, XLA hands dots, elementwise ops and reductions to YNNPACK fusions by default. Most reductions
in a POSSM train step are tiny (the gradient of a per-token logit is a 64-wide dot product per token: ~98 k of them
in a batch of 64 windows), and as a YNNPACK reduction that one op took 78 ms of a 190 ms encoder backward pass on
one core; XLA's own loop fusion does it in about a millisecond. So reductions stay with XLA:

* the train step (:func:`train_compiler_options`) keeps YNNPACK fusions of dots with their elementwise neighbours
  (``LIBRARY_FUSION_TYPE_DOT``);
* the streaming step (:func:`stream_compiler_options`) keeps YNNPACK for single dots only
  (``LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT``), which was the faster of the two for its batch-1 matvecs.

Measured on the 2-core EPYC, each alternative in one run: the possm_small train step at batch 64 took 161–191 ms
with the train setting, 198–202 ms with single dots and 224–241 ms with XLA's defaults; the possm_small streaming
step (1 thread) 160 µs with single dots, 163–223 µs with the train setting and 186–205 µs with the defaults.
The README's throughput section has the train step of every preset, with and without.

The option is experimental in XLA, so it is only passed when the running jaxlib accepts it (checked once by
compiling a one-line program), and never when the user sets ``--xla_cpu_experimental_ynn_fusion_type`` themselves
in ``XLA_FLAGS``, which then wins.
"""

import functools
import os

import jax
import jax.numpy as jnp

YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"
TRAIN_YNN_FUSIONS = "LIBRARY_FUSION_TYPE_DOT"
STREAM_YNN_FUSIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"


@functools.cache
def _accepted(option: str, value: str) -> bool:
    """True if this jaxlib compiles a program with ``{option: value}`` (unknown options and values are errors)."""
    try:
        jax.jit(jnp.sin, compiler_options={option: value}).lower(jnp.zeros(())).compile()
    except Exception:  # noqa: BLE001 - any failure means "not supported here"; fall back to XLA's defaults
        return False
    return True


def _ynn_fusions(types: str) -> dict[str, str] | None:
    """``{YNN_FUSION_OPTION: types}`` on a CPU backend that accepts it and whose user has not set it; else None."""
    if jax.default_backend() != "cpu" or YNN_FUSION_OPTION in os.environ.get("XLA_FLAGS", ""):
        return None
    if not _accepted(YNN_FUSION_OPTION, types):
        return None
    return {YNN_FUSION_OPTION: types}


def train_compiler_options() -> dict[str, str] | None:
    """``jax.jit`` compiler options for a train step (module docstring); None where XLA's defaults are kept."""
    return _ynn_fusions(TRAIN_YNN_FUSIONS)


def stream_compiler_options() -> dict[str, str] | None:
    """``jax.jit`` compiler options for a streaming step (module docstring); None where XLA's defaults are kept."""
    return _ynn_fusions(STREAM_YNN_FUSIONS)
