"""LAMB: the optax transform matches a numpy implementation of the reference LAMB written here, step by step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from possm_jax.train.optim import clipped_trust_ratio, hyperparams, lamb, reference_lamb


def numpy_lamb(params, grads_per_step, lrs, b1s, b2=0.999, eps=1e-6, wd=1e-4, max_norm=10.0, sparse=()):
    """LAMB in float64 numpy: no bias correction, eps outside sqrt, clipped trust ratio, optional row resets."""
    params = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    history = []
    for grads, lr, b1 in zip(grads_per_step, lrs, b1s, strict=True):
        for k in params:
            g = grads[k].astype(np.float64)
            m[k] = b1 * m[k] + (1 - b1) * g
            v2[k] = b2 * v2[k] + (1 - b2) * g * g
            if k in sparse:
                for row in range(g.shape[0]):
                    if not np.any(g[row]):
                        m[k][row] = 0.0
                        v2[k][row] = 0.0
            adam = m[k] / (np.sqrt(v2[k]) + eps) + wd * params[k]
            w_norm = min(np.sqrt(np.sum(params[k] ** 2)), max_norm)
            a_norm = np.sqrt(np.sum(adam**2))
            ratio = 1.0 if w_norm == 0 or a_norm == 0 else w_norm / a_norm
            params[k] = params[k] - lr * ratio * adam
        history.append({k: v.copy() for k, v in params.items()})
    return history


def _toy_problem(steps=6, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "w": rng.normal(size=(4, 3)).astype(np.float32),
        "big": (5.0 * rng.normal(size=(8, 8))).astype(np.float32),  # ‖w‖ > 10: the clip is active
        "zero": np.zeros((3,), np.float32),  # ‖w‖ = 0: ratio 1
        "emb": rng.normal(size=(5, 2)).astype(np.float32),
    }
    grads = []
    for t in range(steps):
        g = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
        g["emb"][rng.permutation(5)[:2]] = 0.0  # two rows get no gradient each step
        if t == 2:
            g["w"] = np.zeros_like(g["w"])
        grads.append(g)
    return params, grads


def _run_optax(tx, params, grads):
    state = tx.init(jax.tree.map(jnp.asarray, params))
    p = jax.tree.map(jnp.asarray, params)
    out = []
    update = jax.jit(tx.update)
    for g in grads:
        u, state = update(jax.tree.map(jnp.asarray, g), state, p)
        p = optax.apply_updates(p, u)
        out.append(p)
    return out, state


def test_clipped_trust_ratio_closed_form():
    assert float(clipped_trust_ratio(jnp.float32(20.0), jnp.float32(4.0), 10.0)) == pytest.approx(2.5)
    assert float(clipped_trust_ratio(jnp.float32(3.0), jnp.float32(4.0), 10.0)) == pytest.approx(0.75)
    assert float(clipped_trust_ratio(jnp.float32(0.0), jnp.float32(4.0), 10.0)) == 1.0
    assert float(clipped_trust_ratio(jnp.float32(3.0), jnp.float32(0.0), 10.0)) == 1.0


@pytest.mark.parametrize("sparse", [False, True])
def test_lamb_matches_numpy_with_schedules(sparse):
    params, grads = _toy_problem()
    steps = len(grads)
    lr_sched = lambda t: 1e-2 * (1.0 - t / 10.0)  # noqa: E731
    b1_sched = lambda t: 0.95 - 0.02 * t  # noqa: E731
    sparse_rows = {k: (k == "emb" and sparse) for k in params}
    tx = lamb(learning_rate=lr_sched, b1=b1_sched, sparse_rows=sparse_rows)
    got, state = _run_optax(tx, params, grads)
    want = numpy_lamb(
        params,
        grads,
        lrs=[lr_sched(t) for t in range(steps)],
        b1s=[0.95 - 0.02 * t for t in range(steps)],
        sparse=("emb",) if sparse else (),
    )
    for t in range(steps):
        for k in params:
            np.testing.assert_allclose(np.asarray(got[t][k]), want[t][k], rtol=1e-6, atol=1e-6, err_msg=f"{k}@{t}")
    hp = hyperparams(state)
    assert float(hp["learning_rate"]) == pytest.approx(lr_sched(steps - 1))
    assert float(hp["b1"]) == pytest.approx(0.95 - 0.02 * (steps - 1))


def test_sparse_policy_changes_untouched_rows_only():
    """Given rows without gradient, the dense and sparse policies differ exactly on those rows."""
    params, grads = _toy_problem(steps=3, seed=1)
    dense, _ = _run_optax(lamb(1e-2), params, grads)
    sparse, _ = _run_optax(lamb(1e-2, sparse_rows=lambda p: {k: k == "emb" for k in p}), params, grads)
    assert not np.allclose(np.asarray(dense[-1]["emb"]), np.asarray(sparse[-1]["emb"]))
    np.testing.assert_array_equal(np.asarray(dense[-1]["w"]), np.asarray(sparse[-1]["w"]))


def test_reference_lamb_scales_lr_with_global_batch():
    params, grads = _toy_problem(steps=1)
    _, state = _run_optax(reference_lamb(global_batch=128, total_steps=100), params, grads)
    hp = hyperparams(state)
    assert float(hp["learning_rate"]) == pytest.approx(4e-3)
    assert float(hp["b1"]) == pytest.approx(0.95)
