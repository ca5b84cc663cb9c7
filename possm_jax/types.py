"""Shape legend and shared type aliases.

Docstrings across the package name array shapes with these letters:

==== ==========================================================================
b    batch (windows or streams)
c    chunks (time bins of ``bin_width`` seconds; 20 per 1 s window at 50 ms)
s    spike tokens, flattened over the chunks of a window (padded to a bucket)
q    output queries (behaviour timestamps)
m    latents per chunk (``num_latents``)
d    model width (``dim``)
e    attention head width (64)
h    backbone output width
n    SSM state size
k    decoder context chunks (3)
==== ==========================================================================
"""

from typing import Any

import jax

Array = jax.Array
PyTree = Any
"""A nested structure of arrays (a backbone state, a batch, a parameter tree)."""
