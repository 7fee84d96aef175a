"""Vmapped training against a hand-written loop, per-variant clipping, Keras L2, decoupled decay, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradflow.data.tasks import recall_task, split
from gradflow.lstm.model import Model, head_loss
from gradflow.training.train import (
    TrainGrid,
    TrainSpec,
    _batch_indices,
    init_model,
    predict_logits,
    settings_arrays,
    train_data,
    train_variants,
)

@pytest.fixture(autouse=True)
def standard_promotion():
    """optax's own code mixes Python floats and int32 counts (as train_variants allows internally)."""
    with jax.numpy_dtype_promotion("standard"):
        yield


TASK = recall_task(48, seq_len=6, features=2, seed=0)
TRAIN, VAL = split(TASK, validation=0.25)
BASES = {"adam": optax.adam, "sgd": optax.sgd, "rmsprop": optax.rmsprop}


def _data(dtype=jnp.float64):
    return train_data(TRAIN, VAL, dtype)


def _reference(spec, setting, data):
    """One variant, a Python loop of steps with optax's plain (non-injected) transformations."""
    model = init_model(spec, setting["forget_bias"], setting["weight_scale"], setting["scheme"], setting["seed"],
                       data.X.dtype)
    clip = setting["clip_norm"]
    parts = [optax.clip_by_global_norm(clip)] if clip > 0 else []
    lr, wd, l2 = setting["learning_rate"], setting["weight_decay"], setting["l2"]
    opt = optax.chain(*parts, BASES[spec.optimizer](lr), optax.add_decayed_weights(-lr * wd))
    state = opt.init(model)
    key = jax.random.fold_in(jax.random.key(setting["seed"]), 2)
    def loss(m, idx):
        fit = head_loss(m.head.output, predict_logits(m, data.X[idx]), data.y[idx])
        lstm = m.layers[0].params
        return fit + l2 * (jnp.sum(lstm.W**2) + jnp.sum(lstm.U**2)), fit

    @jax.jit  # one step, compiled on its own: the Python loop over steps stays the reference's
    def step(model, state, idx):
        (_, fit), grads = jax.value_and_grad(loss, has_aux=True)(model, idx)
        updates, state = opt.update(grads, state, model)
        return optax.apply_updates(model, updates), state, fit

    losses = []
    for s in range(spec.steps):
        idx = _batch_indices(key, s, data.X.shape[0], min(spec.batch_size, data.X.shape[0]))
        model, state, fit = step(model, state, idx)
        losses.append(float(fit))
    return np.array(losses), jax.nn.sigmoid(predict_logits(model, data.X_val)[:, 0])


SETTINGS = [
    {"forget_bias": 1.0, "weight_scale": 1.0, "scheme": 0, "seed": 3, "learning_rate": 0.01, "weight_decay": 0.0,
     "l2": 0.0, "clip_norm": 0.0},
    {"forget_bias": -1.0, "weight_scale": 1.5, "scheme": 1, "seed": 4, "learning_rate": 0.05, "weight_decay": 0.1,
     "l2": 0.01, "clip_norm": 0.05},
]


def _arrays(settings):
    keys = settings[0].keys()
    out = {k: jnp.asarray([s[k] for s in settings], jnp.float32) for k in keys}
    out["scheme"] = jnp.asarray([s["scheme"] for s in settings], jnp.int32)
    out["seed"] = jnp.asarray([s["seed"] for s in settings], jnp.uint32)
    return out


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
@pytest.mark.slow
def test_vmapped_training_equals_a_loop_over_two_variants(optimizer):
    spec = TrainSpec.for_task(TASK, hidden_size=5, optimizer=optimizer, steps=6, batch_size=8, checkpoints=2, grad_probe=2)
    data = _data()
    out = train_variants(spec, _arrays(SETTINGS), data)
    for v, setting in enumerate(SETTINGS):
        # the reference sees the same float32-rounded hyperparameters
        rounded = {k: (float(np.float32(x)) if isinstance(x, float) else x) for k, x in setting.items()}
        losses, preds = _reference(spec, rounded, data)
        np.testing.assert_allclose(out["train_loss"][v], losses, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(out["final_val_predictions"][v], preds, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_per_variant_clipping_differs_from_a_global_clip():
    spec = TrainSpec.for_task(TASK, hidden_size=5, optimizer="sgd", steps=2, batch_size=8, checkpoints=1, grad_probe=1)
    data = _data()
    tight = dict(SETTINGS[0], clip_norm=1e-3, learning_rate=1.0)
    free = dict(SETTINGS[0], seed=7, learning_rate=1.0)
    both = train_variants(spec, _arrays([tight, free]), data)
    alone = [train_variants(spec, _arrays([s]), data) for s in (tight, free)]
    for v in range(2):  # each variant as if trained alone: the clip saw only its own gradients
        np.testing.assert_allclose(both["final_val_predictions"][v], alone[v]["final_val_predictions"][0], rtol=1e-12)

    # a clip of the two variants' gradients together (what a clip outside vmap does) gives other results
    models = [init_model(spec, s["forget_bias"], s["weight_scale"], s["scheme"], s["seed"], jnp.float64) for s in (tight, free)]
    idx = [_batch_indices(jax.random.fold_in(jax.random.key(s["seed"]), 2), 0, data.X.shape[0], 8) for s in (tight, free)]
    grads = [jax.grad(lambda m, i=i: head_loss("sigmoid", predict_logits(m, data.X[i]), data.y[i]))(m)
             for m, i in zip(models, idx)]
    joint = optax.tree.norm(grads)
    per_variant = [optax.tree.norm(g) for g in grads]
    scale_joint = min(1.0, 1e-3 / float(joint))
    scale_own = min(1.0, 1e-3 / float(per_variant[0]))
    assert scale_joint < scale_own  # the joint norm is larger: the tight variant would be shrunk more
    stepped = jax.tree.map(lambda w, g: w - 1.0 * scale_joint * g, models[0], grads[0])
    joint_pred = jax.nn.sigmoid(predict_logits(stepped, data.X_val)[:, 0])
    own = jax.tree.map(lambda w, g: w - 1.0 * scale_own * g, models[0], grads[0])
    own_pred = jax.nn.sigmoid(predict_logits(own, data.X_val)[:, 0])
    single = TrainSpec.for_task(TASK, hidden_size=5, optimizer="sgd", steps=1, batch_size=8, checkpoints=1, grad_probe=1)
    one_step = train_variants(single, _arrays([tight]), data)["final_val_predictions"][0]
    np.testing.assert_allclose(one_step, own_pred, rtol=1e-10)
    assert np.max(np.abs(np.asarray(joint_pred) - np.asarray(own_pred))) > 1e-8


@pytest.mark.slow
def test_l2_is_keras_kernel_and_recurrent_penalty_and_weight_decay_is_decoupled():
    spec = TrainSpec.for_task(TASK, hidden_size=4, optimizer="sgd", steps=1, batch_size=8, checkpoints=1, grad_probe=1)
    data = _data()
    base = dict(SETTINGS[0], learning_rate=0.1)
    l2, wd = 0.3, 0.2
    plain = train_variants(spec, _arrays([base]), data)
    with_l2 = train_variants(spec, _arrays([dict(base, l2=l2)]), data)
    with_wd = train_variants(spec, _arrays([dict(base, weight_decay=wd)]), data)
    np.testing.assert_allclose(with_l2["train_loss"], plain["train_loss"])  # the recorded loss is the data loss
    # one SGD step: W' = W - lr (g + 2 l2 W) for kernels (bias and head untouched); decay: W' = W - lr g - lr wd W
    m0 = init_model(spec, base["forget_bias"], base["weight_scale"], base["scheme"], base["seed"], jnp.float64)
    idx = _batch_indices(jax.random.fold_in(jax.random.key(base["seed"]), 2), 0, data.X.shape[0], 8)
    g = jax.grad(lambda m: head_loss("sigmoid", predict_logits(m, data.X[idx]), data.y[idx]))(m0)
    lr = float(np.float32(0.1))
    p0, gp = m0.layers[0].params, g.layers[0].params
    lstm = p0._replace(W=p0.W - lr * (gp.W + 2 * float(np.float32(l2)) * p0.W),
                       U=p0.U - lr * (gp.U + 2 * float(np.float32(l2)) * p0.U), b=p0.b - lr * gp.b)
    l2_model = m0.replace(layers=(m0.layers[0].replace(params=lstm),),
                          head=m0.head.replace(kernel=m0.head.kernel - lr * g.head.kernel,
                                               bias=m0.head.bias - lr * g.head.bias))
    wd_model = jax.tree.map(lambda w, gr: w - lr * gr - lr * float(np.float32(wd)) * w, m0, g)
    for out, model in ((with_l2, l2_model), (with_wd, wd_model)):
        want = jax.nn.sigmoid(predict_logits(model, data.X_val)[:, 0])
        np.testing.assert_allclose(out["final_val_predictions"][0], want, rtol=1e-10)


@pytest.mark.slow
def test_training_lowers_the_loss_on_an_easy_task_and_records_everything():
    task = recall_task(256, seq_len=4, seed=5)
    train, val = split(task)
    spec = TrainSpec.for_task(task, hidden_size=8, steps=150, batch_size=32, checkpoints=3, grad_probe=2)
    grid = TrainGrid(learning_rate=[0.02], forget_bias=[1.0], seed=[0, 1])
    with jax.enable_x64(False):
        out = train_variants(spec, settings_arrays(grid.values()), train_data(train, val))
    out = jax.tree.map(np.asarray, out)
    assert out["val_loss"].shape == (2, 4) and out["train_loss"].shape == (2, 150)
    assert (out["val_loss"][:, -1] < 0.2 * out["val_loss"][:, 0]).all()
    assert (out["val_accuracy"][:, -1] >= 0.95).all() and (out["val_spread"][:, -1] > 0.3).all()
    assert out["log10_grad_norm"].shape == (2, 4, 5) and np.isfinite(out["log10_grad_norm"]).all()
    assert out["initial_log10_norm"].shape == (2, 4) and out["update_ratio"].shape == (2, 3)
    for gate in ("input", "forget", "cell", "output"):
        assert ((0 <= out[f"saturation_{gate}"]) & (out[f"saturation_{gate}"] <= 1)).all()
    final = out["final_model"]  # the one model representation, a leading variants axis on its arrays
    assert isinstance(final, Model) and final.head.output == "sigmoid" and final.layers[0].params.U.shape == (2, 8, 32)


def test_bad_specs_and_data_are_refused():
    with pytest.raises(ValueError, match="optimizer='adagrad' is not known"):
        TrainSpec(2, 3, 4, optimizer="adagrad")
    with pytest.raises(ValueError, match=r"steps \(10\) must be a multiple of checkpoints \(3\)"):
        TrainSpec(2, 3, 4, steps=10, checkpoints=3)
    spec = TrainSpec(2, 3, 5)
    with pytest.raises(ValueError, match=r"data.X must have shape \(N, 5, 2\) for this spec; got \(36, 6, 2\)"):
        train_variants(spec, _arrays(SETTINGS), _data())


@pytest.mark.slow
def test_the_batch_schedule_is_the_per_step_shuffle_computed_once_per_epoch():
    from gradflow.training.train import batch_schedule

    key = jax.random.key(3)
    for steps, n, batch in ((37, 50, 8), (5, 7, 7), (12, 10, 3), (3, 4, 8)):
        want = np.stack([np.asarray(_batch_indices(key, s, n, min(batch, n))) for s in range(steps)])
        got = np.asarray(batch_schedule(key, steps, n, min(batch, n)))
        np.testing.assert_array_equal(got, want)
        per_epoch = -(-n // min(batch, n))
        first_epoch = got[:per_epoch].ravel()[:n]
        assert sorted(first_epoch.tolist()) == list(range(n))  # every sequence once per epoch
