"""The one model representation: its stack and head against a numpy LSTM in float64, a pytree that jax transforms
and optax update unchanged, a round trip through the NNX shell, and the same type from weight files and training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import gradflow as gf
from gradflow.data.weights import model_from_arrays
from gradflow.lstm.model import (
    Bidirectional,
    Head,
    Layer,
    Model,
    final_state,
    head_logits,
    head_loss,
    hidden_states,
    predictions,
)
from gradflow.training.train import TrainSpec, init_model

D, H, T = 3, 4, 7
NP_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}
NP_OUTPUTS = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softmax": lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum(),
    "linear": lambda z: z,
}


def _numpy_lstm(params, xs, act):
    """h_1..h_T of the cell equations in float64 numpy, gate order (i, f, g, o)."""
    W, U, b = (np.asarray(a, np.float64) for a in params)
    n = U.shape[0]
    sig = NP_OUTPUTS["sigmoid"]
    h, c, hs = np.zeros(n), np.zeros(n), []
    for x in xs:
        z = x @ W + h @ U + b
        i, f, g, o = sig(z[:n]), sig(z[n : 2 * n]), NP_ACTIVATIONS[act](z[2 * n : 3 * n]), sig(z[3 * n :])
        c = f * c + i * g
        h = o * NP_ACTIVATIONS[act](c)
        hs.append(h)
    return np.stack(hs)


def _layer(seed, d, *, direction="forward", activation="tanh"):
    params = gf.init_lstm(jax.random.key(seed), d, H, scheme="normal", weight_scale=1.5, forget_bias=0.5,
                          dtype=jnp.float64)
    return Layer(params, direction=direction, activation=activation)


def _head(seed, width, k, output):
    rng = np.random.default_rng(seed)
    return Head(jnp.asarray(rng.normal(size=(width, k))), jnp.asarray(rng.normal(size=k)), output)


STACKS = {
    "one forward layer": lambda: (_layer(0, D),),
    "two forward layers, relu": lambda: (_layer(0, D, activation="relu"), _layer(1, H, activation="relu")),
    "a backward layer": lambda: (_layer(0, D, direction="backward"),),
    "forward below a bidirectional pair": lambda: (
        _layer(0, D), Bidirectional(_layer(1, H), _layer(2, H, direction="backward"))),
}


def _numpy_stack(layers, xs):
    """Top-level states (T, F) and the final state the head reads, level by level in numpy."""
    inputs = np.asarray(xs, np.float64)
    for level in layers:
        parts = (level.forward, level.backward) if isinstance(level, Bidirectional) else (level,)
        outs, finals = [], []
        for layer in parts:
            if layer.direction == "backward":
                hs = _numpy_lstm(layer.params, inputs[::-1], layer.activation)[::-1]
                finals.append(hs[0])
            else:
                hs = _numpy_lstm(layer.params, inputs, layer.activation)
                finals.append(hs[-1])
            outs.append(hs)
        inputs = np.concatenate(outs, axis=-1)
    return inputs, np.concatenate(finals)


@pytest.mark.parametrize("output", ["sigmoid", "softmax", "linear"])
@pytest.mark.parametrize("stack", list(STACKS))
def test_predictions_are_a_hand_written_unroll_and_head_in_float64(stack, output, rng):
    layers = STACKS[stack]()
    xs = rng.normal(size=(T, D))
    want_states, phi = _numpy_stack(layers, xs)
    model = Model(layers, _head(1, phi.shape[0], 3, output))
    np.testing.assert_allclose(hidden_states(model, jnp.asarray(xs)), want_states, rtol=0, atol=1e-13)
    np.testing.assert_allclose(final_state(model, jnp.asarray(xs)), phi, rtol=0, atol=1e-13)
    z = phi @ np.asarray(model.head.kernel) + np.asarray(model.head.bias)
    got = predictions(model, jnp.asarray(xs))
    assert got.shape == (3,) and got.dtype == jnp.float64
    np.testing.assert_allclose(head_logits(model, jnp.asarray(xs)), z, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, NP_OUTPUTS[output](z), rtol=0, atol=1e-12)
    assert model.input_size == D and model.hidden_size == H and model.output_size == 3
    assert Model(layers).output_size == phi.shape[0]  # without a head: the top level's width


def test_a_backward_layer_reads_the_sequence_reversed(rng):
    layer = _layer(0, D)
    xs = jnp.asarray(rng.normal(size=(T, D)))
    backward = hidden_states(Model((layer.replace(direction="backward"),)), xs)
    np.testing.assert_array_equal(backward, hidden_states(Model((layer,)), xs[::-1])[::-1])
    assert np.max(np.abs(np.asarray(backward - hidden_states(Model((layer,)), xs)))) > 1e-3


@pytest.mark.parametrize("output", ["sigmoid", "softmax", "linear"])
def test_head_loss_is_the_loss_of_its_output_function(output, rng):
    logits = rng.normal(size=(6, 1 if output == "sigmoid" else 3)) * 3
    if output == "sigmoid":
        y = rng.integers(0, 2, 6).astype(np.float64)
        p = NP_OUTPUTS["sigmoid"](logits[:, 0])
        want = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    elif output == "softmax":
        y = np.eye(3)[rng.integers(0, 3, 6)]
        want = -np.mean([np.log(NP_OUTPUTS["softmax"](z)) @ t for z, t in zip(logits, y)])
    else:
        y = rng.normal(size=(6, 3))
        want = np.mean((logits - y) ** 2)
    assert float(head_loss(output, jnp.asarray(logits), jnp.asarray(y))) == pytest.approx(want, rel=1e-12)


def _model(seed=0, output="sigmoid"):
    return Model((_layer(seed, D),), _head(seed, H, 1, output))


def test_the_array_leaves_are_the_trainable_parameters_and_the_rest_is_static():
    model = _model()
    p = model.layers[0].params
    leaves = jax.tree.leaves(model)
    assert len(leaves) == 5 and all(a is b for a, b in zip(leaves, [p.W, p.U, p.b, model.head.kernel, model.head.bias]))
    doubled = jax.tree.map(lambda a: 2 * a, model)
    assert isinstance(doubled, Model) and doubled.head.output == "sigmoid" and doubled.layers[0].activation == "tanh"
    np.testing.assert_array_equal(doubled.layers[0].params.U, 2 * p.U)
    relu = model.replace(layers=(model.layers[0].replace(activation="relu"),))
    assert jax.tree.structure(relu) != jax.tree.structure(model)  # static fields are part of the structure


def test_vmap_over_a_variants_axis_is_a_loop_over_variants(rng):
    variants = [_model(seed) for seed in range(3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *variants)
    assert stacked.input_size == D and stacked.hidden_size == H and stacked.output_size == 1
    xs = jnp.asarray(rng.normal(size=(T, D)))
    got = jax.vmap(lambda m: predictions(m, xs))(stacked)
    want = np.stack([np.asarray(predictions(m, xs)) for m in variants])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    assert np.ptp(want) > 1e-3


@pytest.mark.slow
def test_value_and_grad_and_an_optax_step_keep_the_structure(rng):
    model = _model(output="linear")
    X, y = jnp.asarray(rng.normal(size=(5, T, D))), jnp.asarray(rng.normal(size=5))

    def loss(m):
        return head_loss(m.head.output, jax.vmap(lambda xs: head_logits(m, xs))(X), y)

    value, grads = jax.value_and_grad(loss)(model)
    assert jax.tree.structure(grads) == jax.tree.structure(model)
    assert grads.head.output == "linear" and grads.layers[0].direction == "forward"

    def bump(s):
        p = model.layers[0].params
        return model.replace(layers=(model.layers[0].replace(params=p._replace(U=p.U.at[1, 2].add(s))),))

    eps = 1e-6  # the gradient is the loss's: a central difference along one recurrent weight
    fd = (loss(bump(eps)) - loss(bump(-eps))) / (2 * eps)
    assert float(grads.layers[0].params.U[1, 2]) == pytest.approx(float(fd), rel=1e-6)
    opt = optax.adam(1e-2)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 step counts
        updates, _ = opt.update(grads, opt.init(model), model)
    stepped = optax.apply_updates(model, updates)
    assert jax.tree.structure(stepped) == jax.tree.structure(model)
    assert float(loss(stepped)) < float(value)


def test_new_weights_of_the_same_shapes_do_not_recompile(rng):
    xs = jnp.asarray(rng.normal(size=(T, D)))
    forward = jax.jit(predictions)
    first = forward(_model(0), xs)
    before = forward._cache_size()
    second = forward(_model(1), xs)
    assert forward._cache_size() == before and np.max(np.abs(np.asarray(first - second))) > 1e-6
    forward(_model(0, output="linear"), xs)  # a static field is part of the compiled program
    assert forward._cache_size() == before + 1


@pytest.mark.slow
def test_the_nnx_module_round_trips_through_the_representation(rng):
    module = gf.LSTM(D, H, out_features=2, activation="relu", recurrent_activation="hard_sigmoid",
                     head_output="softmax", rngs=nnx.Rngs(0), dtype=jnp.float64)
    module.head.bias[...] = jnp.asarray(rng.normal(size=2))
    model = module.model
    assert isinstance(model, Model) and model.head.output == "softmax"
    assert (model.layers[0].activation, model.layers[0].recurrent_activation) == ("relu", "hard_sigmoid")
    again = gf.LSTM.from_model(model)
    xs = jnp.asarray(rng.normal(size=(4, T, D)))
    np.testing.assert_array_equal(again(xs), module(xs))
    np.testing.assert_array_equal(module(xs[0]), head_logits(model, xs[0]))
    for a, b in zip(jax.tree.leaves(again.model), jax.tree.leaves(model)):
        assert a.dtype == jnp.float64
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(again.model) == jax.tree.structure(model)
    with pytest.raises(ValueError, match="one forward LSTM layer with a head"):
        gf.LSTM.from_model(Model((_layer(0, D), _layer(1, H)), _head(0, H, 1, "linear")))


def test_weight_files_and_training_give_the_same_representation(rng):
    spec = TrainSpec(D, H, T, output_size=1, kind="binary")
    trained = init_model(spec, 1.0, 1.0, 0, 0)
    p = trained.layers[0].params
    arrays = {"kernel": p.W, "recurrent_kernel": p.U, "bias": p.b, "head_kernel": trained.head.kernel,
              "head_bias": trained.head.bias}
    loaded = model_from_arrays({k: np.asarray(a) for k, a in arrays.items()}, head_output="sigmoid")
    assert type(loaded) is type(trained) is Model
    assert jax.tree.structure(loaded) == jax.tree.structure(trained)
    xs = jnp.asarray(rng.normal(size=(T, D)), jnp.float32)
    np.testing.assert_allclose(predictions(loaded, xs), predictions(trained, xs), rtol=1e-6)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: _layer(0, D).replace(cell="rnn"), r"cell='rnn' is not a known cell kind; expected one of \['lstm', 'gru'"),
        (lambda: _layer(0, D).replace(cell="gru"), r"a cell='gru' layer holds GRUParams; got LSTMParams"),
        (lambda: _layer(0, D).replace(direction="up"), "direction='up' is not a known layer direction"),
        (lambda: _layer(0, D).replace(activation="gelu"), "activation='gelu'"),
        (lambda: _head(0, H, 1, "tanh"), "output='tanh' is not a known head output"),
        (lambda: Bidirectional(_layer(0, D), _layer(1, D)), "Bidirectional.backward must be a backward layer"),
        (lambda: Model(()), "layers must be a non-empty tuple"),
        (lambda: hidden_states(Model((_layer(0, D), _layer(1, D))), jnp.ones((T, D))),
         "layers\\[1\\] takes 3 input features but the level below gives 4"),
        (lambda: hidden_states(Model((_layer(0, D),)), jnp.ones((T, D + 1))), r"xs must have shape \(T, 3\)"),
        (lambda: head_logits(Model((_layer(0, D),)), jnp.ones((T, D))), "this model has no head"),
    ],
)
def test_bad_models_are_refused_naming_what_is_wrong(build, match):
    with pytest.raises(ValueError, match=match):
        build()
