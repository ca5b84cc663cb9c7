"""Target codes: place cells over the arena and head-direction cells on the circle, and their decoders.

Shapes: ``...`` any leading batch/time axes, ``n`` cells.
"""

import jax
import jax.numpy as jnp

from possm_jax.types import Array


def place_cell_centres(key: Array, num_cells: int, box_size: float) -> Array:
    """Place-cell centres drawn uniformly over the square arena ``[-L/2, L/2]^2``.

    Returns:
        Centres ``[n, 2]`` in metres.
    """
    half = box_size / 2
    return jax.random.uniform(key, (num_cells, 2), minval=-half, maxval=half)


def place_code(pos: Array, centres: Array, sigma: float, dog_surround: float = 0.0) -> Array:
    """Softmax-normalised Gaussian place-cell code.

    ``f_i(s) = softmax_i(-|s - c_i|^2 / 2 sigma^2)``. With ``dog_surround = k > 1`` the code is a difference of
    Gaussians, ``softmax(sigma) - softmax(k sigma)``, shifted so each vector's minimum is zero.

    Args:
        pos: Positions ``[..., 2]``.
        centres: Cell centres ``[n, 2]``.
        sigma: Tuning width in metres (0.2 in the paper).
        dog_surround: Surround width as a multiple of ``sigma``; 0 disables the difference of Gaussians.

    Returns:
        Code ``[..., n]``.
    """
    sq = jnp.sum((pos[..., None, :] - centres) ** 2, axis=-1)
    code = jax.nn.softmax(-sq / (2 * sigma**2), axis=-1)
    if dog_surround > 0:
        code = code - jax.nn.softmax(-sq / (2 * (dog_surround * sigma) ** 2), axis=-1)
        code = code - jnp.min(code, axis=-1, keepdims=True)
    return code


def head_direction_code(theta: Array, preferred: Array, concentration: float) -> Array:
    """Von Mises-like head-direction code, ``f_i(theta) = softmax_i(kappa cos(theta - phi_i))``.

    Args:
        theta: Angles ``[...]`` in radians.
        preferred: Preferred directions ``[n]``.
        concentration: ``kappa``; larger is sharper.

    Returns:
        Code ``[..., n]``.
    """
    return jax.nn.softmax(concentration * jnp.cos(theta[..., None] - preferred), axis=-1)


def decode_top_k(outputs: Array, centres: Array, k: int = 3) -> Array:
    """Position as the mean centre of the ``k`` most active output cells (the paper decodes with k=3).

    Args:
        outputs: Network outputs ``[..., n]``.
        centres: Cell centres ``[n, 2]``.
        k: Number of cells averaged.

    Returns:
        Decoded positions ``[..., 2]``.
    """
    _, idx = jax.lax.top_k(outputs, k)
    return jnp.mean(centres[idx], axis=-2)


def decode_top_k_angle(outputs: Array, preferred: Array, k: int = 3) -> Array:
    """Angle as the circular mean of the preferred directions of the ``k`` most active cells.

    Args:
        outputs: Network outputs ``[..., n]``.
        preferred: Preferred directions ``[n]``.
        k: Number of cells averaged.

    Returns:
        Decoded angles ``[...]`` in ``(-pi, pi]``.
    """
    _, idx = jax.lax.top_k(outputs, k)
    phi = preferred[idx]
    return jnp.arctan2(jnp.mean(jnp.sin(phi), -1), jnp.mean(jnp.cos(phi), -1))
