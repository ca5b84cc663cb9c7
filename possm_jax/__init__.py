"""possm-jax: POSSM (spike tokens -> per-chunk encoder -> recurrent backbone -> banded decoder) in JAX / flax.nnx.

Quick start::

    from flax import nnx
    import possm_jax

    model = possm_jax.POSSM(possm_jax.get_preset("possm_small"), num_units=len(units), num_sessions=len(sessions),
                            rngs=nnx.Rngs(0))
    preds, state = model(batch)                    # a window, batch layout of data_pipeline.batch_layout
    streamer = possm_jax.Streamer(model)           # real time: one chunk in, predictions out
    s = streamer.init(1); s, preds = streamer(s, chunk, queries)
"""

from possm_jax.config import POSSMConfig, get_preset, preset_names
from possm_jax.convert_torch import load_reference_npz, load_reference_state_dict
from possm_jax.possm import POSSM, DecoderTimes, StreamState, StreamTables, count_params
from possm_jax.streaming import LoadedStep, Streamer, export_step, exported_step, load_step, make_step
from possm_jax.validate import InputError

__all__ = [
    "POSSM",
    "DecoderTimes",
    "InputError",
    "LoadedStep",
    "POSSMConfig",
    "StreamState",
    "StreamTables",
    "Streamer",
    "count_params",
    "export_step",
    "exported_step",
    "get_preset",
    "load_reference_npz",
    "load_reference_state_dict",
    "load_step",
    "make_step",
    "preset_names",
]
