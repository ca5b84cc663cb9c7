"""XLA compiler options for the hot programs this library jits: the train step and the streaming step.

On the CPU backend, XLA hands dots, elementwise ops and reductions to YNNPACK fusions by default. Most reductions
in a POSSM train step are tiny (the gradient of a per-token logit is a 64-wide dot product per token: ~98 k of them
in a batch of 64 windows), and as a YNNPACK reduction that one op took 78 ms of a 190 ms encoder backward pass on
one core; XLA's own loop fusion does it in about a millisecond. :func:`cpu_compiler_options` therefore keeps
YNNPACK for individual dots only. Measured on one core: the possm_small train step at batch 64 went from ~400 to
~300 ms and its streaming step from ~200 to ~170 µs; the larger presets changed by less than the noise
(``docs/benchmarks.md`` has the step times of each preset, with and without).

The option is experimental in XLA, so it is only passed when the running jaxlib accepts it (checked once by
compiling a one-line program), and never when the user sets ``--xla_cpu_experimental_ynn_fusion_type`` themselves
in ``XLA_FLAGS``, which then wins.
"""

import functools
import os

import jax
import jax.numpy as jnp

YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# YNNPACK fusions kept on the CPU backend: single dots, with no elementwise or reduction work fused into them.
YNN_FUSION_TYPES = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"


@functools.cache
def _accepted(option: str, value: str) -> bool:
    """True if this jaxlib compiles a program with ``{option: value}`` (unknown options and values are errors)."""
    try:
        jax.jit(jnp.sin, compiler_options={option: value}).lower(jnp.zeros(())).compile()
    except Exception:  # noqa: BLE001 - any failure means "not supported here"; fall back to XLA's defaults
        return False
    return True


def cpu_compiler_options() -> dict[str, str] | None:
    """Compiler options for ``jax.jit`` of a hot program on the default backend; None where the defaults are kept.

    CPU only: ``{"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}`` (module docstring).
    Other backends, a jaxlib without the option, and an ``XLA_FLAGS`` that already sets it all get None.
    """
    if jax.default_backend() != "cpu" or YNN_FUSION_OPTION in os.environ.get("XLA_FLAGS", ""):
        return None
    if not _accepted(YNN_FUSION_OPTION, YNN_FUSION_TYPES):
        return None
    return {YNN_FUSION_OPTION: YNN_FUSION_TYPES}
