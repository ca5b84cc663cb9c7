"""Building blocks of POSSM: pure functions over arrays plus thin nnx modules holding their parameters.

* :mod:`~possm_jax.nn.rope`: rotary time embedding (angles, rotation, frequencies).
* :mod:`~possm_jax.nn.attention`: rotary cross-attention (dense and segment softmax cores).
* :mod:`~possm_jax.nn.ffn`: pre-norm GEGLU feed-forward, dropout.
* :mod:`~possm_jax.nn.encoder`: per-chunk latent encoder.
* :mod:`~possm_jax.nn.decoder`: banded output decoder and task readouts.
* :mod:`~possm_jax.nn.linear`: torch-initialised Linear and LayerNorm.
"""

from possm_jax.nn.attention import RotaryCrossAttention, masked_attention, segment_attention
from possm_jax.nn.decoder import OutputDecoder, band_key_times, band_length, band_offsets
from possm_jax.nn.encoder import SpikeEncoder, latent_times
from possm_jax.nn.ffn import FeedForward, geglu
from possm_jax.nn.rope import RotaryTime, rope_angles, rope_frequencies, rotate

__all__ = [
    "FeedForward",
    "OutputDecoder",
    "RotaryCrossAttention",
    "RotaryTime",
    "SpikeEncoder",
    "band_key_times",
    "band_length",
    "band_offsets",
    "geglu",
    "latent_times",
    "masked_attention",
    "rope_angles",
    "rope_frequencies",
    "rotate",
    "segment_attention",
]
