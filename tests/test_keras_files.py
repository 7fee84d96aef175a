"""Keras 3 models: saved ``.keras`` files and live models read as gradflow models equal Keras's own outputs (float32)
and lag profiles equal Jacobians taken through the Keras layers themselves (float64); what gradflow cannot read is
refused by name; the backend falls back to JAX when the configured one is missing."""

import json
import os
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import LOG10_ATOL

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

from gradflow.data.keras_files import (
    configured_keras_backend,
    import_keras,
    keras_numerics,
    load_keras_model,
    model_from_keras,
)
from gradflow.flow.networks import model_profiles
from gradflow.lstm.model import Bidirectional, Layer, hidden_states, level_inputs, predictions

pytestmark = [
    pytest.mark.skipif(keras.config.backend() != "jax", reason="the references run Keras on the JAX backend"),
    # Keras's own get_weights and saving call np.array(variable), which NumPy 2 warns about (not gradflow's code).
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

L = keras.layers
T, D, N = 7, 3, 3


def _randomised(model, seed: int, scale: float = 0.6):
    """``model`` with every weight drawn afresh (biases too: zeros would hide a bias read wrongly)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=scale, size=w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _keras_model(layers, seed=0):
    with keras_numerics():
        return _randomised(keras.Sequential([keras.Input((None, D)), *layers]), seed)


def _saved_and_loaded(model, tmp_path):
    path = tmp_path / "m.keras"
    with keras_numerics():
        model.save(path)
    return load_keras_model(path)


def _keras_outputs(model, xs):
    """Keras's own outputs of ``model`` and of each recurrent layer (in Keras's order) on ``xs`` (N, T, D)."""
    recurrent = [layer for layer in model.layers if type(layer).__name__ in ("LSTM", "GRU", "Bidirectional")]
    probe = keras.Model(model.inputs[0], [layer.output for layer in recurrent] + [model.outputs[0]])
    with keras_numerics():
        outs = [np.asarray(o) for o in probe(xs, training=False)]
    return recurrent, outs[:-1], outs[-1]


FORWARD_CASES = {
    "lstm": lambda: [L.LSTM(4, return_sequences=True)],
    "gru_reset_after_sigmoid_head": lambda: [L.GRU(4), L.Dense(1, activation="sigmoid")],
    "gru_reset_before_relu_hard_sigmoid_softmax_head": lambda: [
        L.GRU(4, reset_after=False, activation="relu", recurrent_activation="hard_sigmoid"),
        L.Dense(3, activation="softmax")],
    "stack_dropout_no_bias_linear_head": lambda: [
        L.LSTM(5, return_sequences=True, activation="softsign", recurrent_activation="hard_sigmoid", dropout=0.3),
        L.Dropout(0.5), L.LSTM(4, use_bias=False, recurrent_dropout=0.2), L.Dense(2)],
    "bidirectional_stack": lambda: [L.Bidirectional(L.LSTM(4, return_sequences=True)),
                                    L.Bidirectional(L.GRU(3, reset_after=False)), L.Dense(1, activation="sigmoid")],
    "go_backwards": lambda: [L.LSTM(4, return_sequences=True, go_backwards=True),
                             L.GRU(3, return_sequences=True, activation="linear"),
                             L.GRU(3, go_backwards=True, return_sequences=True)],
    "go_backwards_head": lambda: [L.GRU(4, go_backwards=True, activation="relu"), L.Dense(2, activation="softmax")],
}


@pytest.mark.parametrize("case", [pytest.param(case, marks=[pytest.mark.slow] if "stack" in case else [])
                                  for case in sorted(FORWARD_CASES)])
def test_a_saved_keras_model_computes_what_keras_computes(case, tmp_path):
    model = _keras_model(FORWARD_CASES[case](), seed=len(case))
    xs = np.random.default_rng(1).normal(size=(N, T, D)).astype(np.float32)
    recurrent, layer_outputs, output = _keras_outputs(model, xs)
    live, loaded = model_from_keras(model), _saved_and_loaded(model, tmp_path)
    for a, b in zip(jax.tree.leaves(live), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(live) == jax.tree.structure(loaded)

    # Each level's output is the next level's input in gradflow (the top one its hidden states), in time order;
    # a Keras sequence is in the order its layer read: reversed after an odd number of go_backwards layers.
    reversed_ = False
    gradflow_outputs = jax.vmap(lambda x: level_inputs(loaded, x)[1:] + [hidden_states(loaded, x)])(xs)
    for layer, keras_out, ours in zip(recurrent, layer_outputs, gradflow_outputs, strict=True):
        reversed_ ^= bool(getattr(layer, "go_backwards", False))
        if layer.return_sequences:
            np.testing.assert_allclose(ours, keras_out[:, ::-1] if reversed_ else keras_out, rtol=1e-5, atol=1e-6)
    if loaded.head is not None:
        assert loaded.head.output == model.layers[-1].get_config()["activation"]
        np.testing.assert_allclose(jax.vmap(lambda x: predictions(loaded, x))(xs), output, rtol=1e-5, atol=1e-6)
    elif not recurrent[-1].return_sequences:
        pytest.fail("every case without a head returns sequences")


def test_a_functional_model_reads_as_its_sequential_twin():
    def layers():
        return [L.GRU(4, return_sequences=True), L.Dropout(0.2), L.LSTM(3), L.Dense(2, activation="sigmoid")]

    sequential = _keras_model(layers(), seed=7)
    with keras_numerics():
        x = keras.Input((None, D))
        y = x
        for layer in layers():
            y = layer(y)
        functional = keras.Model(x, y)
        functional.set_weights(sequential.get_weights())
        xs = np.random.default_rng(3).normal(size=(N, T, D)).astype(np.float32)
        expected = np.asarray(functional.predict(xs, verbose=0))
    a, b = model_from_keras(functional), model_from_keras(sequential)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x_, y_ in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x_, y_)
    np.testing.assert_allclose(jax.vmap(lambda x: predictions(a, x))(xs), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("keras_building")
def test_keras_layers_map_to_gradflow_layers():
    model = _keras_model([L.LSTM(4, return_sequences=True, go_backwards=True), L.Dropout(0.1),
                          L.GRU(3, reset_after=False, return_sequences=True, activation="softsign"),
                          L.Bidirectional(L.GRU(2))])
    with pytest.raises(ValueError, match="time-reversed sequence of a go_backwards layer"):
        model_from_keras(model)
    model = _keras_model([L.Bidirectional(L.GRU(3, return_sequences=True)), L.LSTM(2, go_backwards=True),
                          L.Dense(1)])
    ours = model_from_keras(model)
    pair, top = ours.layers
    assert isinstance(pair, Bidirectional) and isinstance(top, Layer) and ours.head.output == "linear"
    assert (pair.forward.cell, pair.backward.cell, top.cell) == ("gru", "gru", "lstm")
    assert (pair.backward.direction, top.direction) == ("backward", "backward")
    gru = model.layers[0].forward_layer.cell
    H = 3
    z, r, n = (slice(i * H, (i + 1) * H) for i in range(3))
    np.testing.assert_array_equal(pair.forward.params.W[:, :H], np.asarray(gru.kernel)[:, r])
    np.testing.assert_array_equal(pair.forward.params.U[:, H:2 * H], np.asarray(gru.recurrent_kernel)[:, z])
    np.testing.assert_array_equal(pair.forward.params.b_recurrent[2 * H:], np.asarray(gru.bias)[1, n])
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(ours))


# ---------------------------------------------------------------- lag profiles against Jacobians through Keras


def _float64_twin(layer, width, **config):
    """A float64 Keras copy of an LSTM or GRU layer reading ``width`` features, with its weights.

    Keras 3.15's ``ops.tanh`` (JAX backend) returns float32 for float64 input, which would cap the reference at
    float32 accuracy: the twin's tanh is ``jnp.tanh`` (Keras takes a callable activation); all else is Keras's."""
    config = {**layer.get_config(), "dtype": "float64", **config}
    if config["activation"] == "tanh":
        config["activation"] = jnp.tanh
    twin = type(layer).from_config(config)
    twin.build((None, None, width))
    twin.set_weights([w.astype(np.float64) for w in layer.get_weights()])
    return twin


def _keras_lag_profile(layer, us):
    """log10 ||dh_T/dh_{T-k}||_F (c fixed) for k = 1..T by restarting the Keras layer at step T-k from (h, c):
    ``us`` (1, T, D) in Keras's order; a go_backwards layer reads it from the end, so its last k steps are us[:, :k]."""
    twin = _float64_twin(layer, us.shape[-1], return_sequences=False, return_state=True)
    T_ = us.shape[1]
    lstm = type(layer).__name__ == "LSTM"
    norms = []
    for k in range(1, T_ + 1):
        before, after = (us[:, k:], us[:, :k]) if layer.go_backwards else (us[:, :T_ - k], us[:, T_ - k:])
        H = twin.units
        state = [jnp.zeros((1, H), jnp.float64)] * (2 if lstm else 1)
        if before.shape[1]:
            state = list(twin(before)[1:])
        h, rest = state[0], state[1:]
        J = jax.jacrev(lambda h0, after=after, rest=rest: twin(after, initial_state=[h0, *rest])[0])(h)
        norms.append(np.log10(np.linalg.norm(np.asarray(J).reshape(H, H))))
    return np.array(norms)


PROFILE_CASES = {
    "lstm_then_gru_reset_before": lambda: [
        L.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid"),
        L.GRU(3, reset_after=False, activation="relu", return_sequences=True), L.LSTM(3, activation="softsign")],
    "bidirectional_gru_then_backward_lstm": lambda: [L.Bidirectional(L.GRU(3, return_sequences=True)),
                                                     L.LSTM(4, go_backwards=True), L.Dense(1)],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(PROFILE_CASES))
def test_lag_profiles_equal_jacobians_through_the_keras_layers(case, tmp_path):
    model = _keras_model(PROFILE_CASES[case](), seed=3)
    ours = _saved_and_loaded(model, tmp_path)
    xs = np.random.default_rng(2).normal(size=(T, D))
    profile = model_profiles(ours, jnp.asarray(xs))
    with keras_numerics():
        us, expected = jnp.asarray(xs[None]), []
        for layer in (layer for layer in model.layers if type(layer).__name__ != "Dense"):
            parts = (layer.forward_layer, layer.backward_layer) if type(layer).__name__ == "Bidirectional" else (layer,)
            expected += [_keras_lag_profile(part, us) for part in parts]
            if layer.return_sequences:  # the next level reads it; Keras puts a Bidirectional's backward half in time order
                sequences = [_float64_twin(part, us.shape[-1])(us) for part in parts]
                us = jnp.concatenate([sequences[0], *(s[:, ::-1] for s in sequences[1:])], axis=-1)
    assert len(profile.layers) == len(expected)
    for got, want in zip(profile.layers, expected, strict=True):
        assert np.ptp(want) > 0.3  # the profile varies with the lag: a lag read wrongly shows
        np.testing.assert_allclose(got.log10_norm_h, want, rtol=0, atol=LOG10_ATOL[np.dtype("float64")])


@pytest.mark.slow
def test_input_sensitivity_of_a_stack_equals_the_keras_jacobian(tmp_path):
    model = _keras_model([L.GRU(4, return_sequences=True), L.LSTM(3, recurrent_activation="hard_sigmoid")], seed=5)
    ours = _saved_and_loaded(model, tmp_path)
    xs = np.random.default_rng(4).normal(size=(T, D))
    with keras_numerics():
        lower, upper = _float64_twin(model.layers[0], D), _float64_twin(model.layers[1], 4)
        J = jax.jacrev(lambda x: upper(lower(x[None]))[0])(jnp.asarray(xs))  # (H, T, D)
    want = np.log10(np.linalg.norm(np.asarray(J), axis=(0, 2)))[::-1]  # entry k: x_{T-k}
    got = model_profiles(ours, jnp.asarray(xs)).input_sensitivity
    assert np.ptp(want) > 0.5
    np.testing.assert_allclose(got, want, rtol=0, atol=LOG10_ATOL[np.dtype("float64")])


# ---------------------------------------------------------------- refusals


@pytest.fixture
def keras_building():
    """Tests that only build Keras models (and gradflow refuses them) run under Keras's promotion rules throughout."""
    with keras_numerics():
        yield


def _refused(layers, match, *, inputs=None):
    model = _keras_model(layers) if inputs is None else layers
    with pytest.raises(ValueError, match=match):
        model_from_keras(model)


@pytest.mark.usefixtures("keras_building")
def test_unsupported_layers_are_refused_by_name_and_class():
    emb = keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(10, D, name="tokens"), L.LSTM(2)])
    _refused(emb, r"layer 'tokens' \(Embedding\) is not supported; gradflow reads LSTM and GRU", inputs=True)
    _refused([L.Conv1D(4, 2, name="conv"), L.LSTM(2)], r"layer 'conv' \(Conv1D\) is not supported")
    _refused([L.Masking(), L.LSTM(2)], r"\(Masking\) is not supported")
    _refused([L.SimpleRNN(2, name="plain")], r"layer 'plain' \(SimpleRNN\) is not supported")
    _refused([L.Bidirectional(L.LSTM(2), merge_mode="sum", name="pair")],
             r"layer 'pair' \(Bidirectional\) has merge_mode='sum'; gradflow reads merge_mode='concat' only")
    _refused([L.Bidirectional(L.SimpleRNN(2), name="pair")], r"\(SimpleRNN\) \(in layer 'pair' \(Bidirectional\)\) is not")

    class LSTM(L.LSTM):  # a subclass may compute anything: only Keras's own classes are read
        pass

    _refused([LSTM(2, name="mine")], r"layer 'mine' \(LSTM\) is not supported")
    _refused([L.Dense(4, name="proj"), L.LSTM(2)], r"layer 'proj' \(Dense\) comes before any recurrent layer")
    _refused([L.LSTM(2), L.Dense(3, activation="relu", name="out")],
             r"layer 'out' \(Dense\) has activation 'relu'; a head's output is one of")
    _refused([L.LSTM(2), L.Dense(3), L.Dense(1, name="second")], r"'second' \(Dense\) follows the Dense head")
    _refused([L.LSTM(2, return_sequences=True, name="top"), L.Dense(1)],
             r"layer 'top' \(LSTM\) has return_sequences=True under the Dense head; the head reads the final state")
    _refused([L.GRU(2, activation="elu", name="g")], r"layer 'g' \(GRU\) has activation 'elu'")
    _refused([L.LSTM(2, recurrent_activation="tanh")], r"recurrent_activation 'tanh'")
    stateful = keras.Sequential([keras.Input((T, D), batch_size=2), L.LSTM(2, stateful=True, name="s")])
    _refused(stateful, r"layer 's' \(LSTM\) has stateful=True", inputs=True)


@pytest.mark.usefixtures("keras_building")
def test_a_model_that_is_not_a_linear_chain_is_refused():
    x = keras.Input((None, D))
    shared = L.LSTM(D, return_sequences=True, name="shared")
    _refused(keras.Model(x, L.LSTM(2)(shared(shared(x)))), r"layer 'shared' \(LSTM\) is called 2 times", inputs=True)
    h0 = L.Dense(2, name="h0")(x[:, 0])
    _refused(keras.Model(x, L.GRU(2, name="g")(x, initial_state=h0)), r"\(GetItem\) is not supported", inputs=True)
    a, b = L.LSTM(2, name="a")(x), L.LSTM(2, name="b")(x)
    _refused(keras.Model(x, [a, b]), "one input and one output; got 1 inputs and 2 outputs", inputs=True)
    _refused(keras.Sequential([L.LSTM(2)]), "not built", inputs=True)
    with pytest.raises(TypeError, match="expected a keras.Model; got LSTM"):
        model_from_keras(L.LSTM(2))


def test_non_finite_weights_are_named():
    model = _keras_model([L.LSTM(2, name="enc"), L.Dense(1)])
    weights = model.get_weights()
    weights[1][0, 0] = np.nan
    model.set_weights(weights)
    with pytest.raises(ValueError, match=r"layer 'enc' \(LSTM\): recurrent_kernel holds 1 non-finite values"):
        model_from_keras(model)


@pytest.mark.usefixtures("keras_building")
def test_files_keras_cannot_or_must_not_load_are_refused(tmp_path):
    x = keras.Input((None, D))
    keras.Model(x, L.LSTM(2)(L.Lambda(lambda t: 2 * t)(x))).save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match=r"could not load it in safe mode \(gradflow never runs the Python code"):
        load_keras_model(tmp_path / "lambda.keras")
    import h5py

    with h5py.File(tmp_path / "legacy.h5", "w") as f:
        f.attrs["model_config"] = "{}"
    for name in ("legacy.h5", "renamed.keras"):
        if name == "renamed.keras":
            (tmp_path / name).write_bytes((tmp_path / "legacy.h5").read_bytes())
        with pytest.raises(ValueError, match="is not a Keras 3 .keras file.*model.save"):
            load_keras_model(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "junk.keras", "w") as archive:
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(ValueError, match=r"junk.keras': Keras could not load it: .*config.json"):
        load_keras_model(tmp_path / "junk.keras")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_keras_model(tmp_path / "missing.keras")


# ---------------------------------------------------------------- the backend


def test_the_configured_backend_is_read_as_keras_reads_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_BACKEND")
    assert configured_keras_backend() == "tensorflow"  # no keras.json: Keras's default
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch", "floatx": "float32"}))
    assert configured_keras_backend() == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "")
    assert configured_keras_backend() == "torch"  # an empty variable is ignored, as Keras ignores it
    monkeypatch.setenv("KERAS_BACKEND", "numpy")
    assert configured_keras_backend() == "numpy"
    (tmp_path / "keras.json").write_text("{not json")
    monkeypatch.delenv("KERAS_BACKEND")
    assert configured_keras_backend() == "tensorflow"


def test_an_imported_keras_is_used_as_it_is_and_a_missing_one_names_the_extra(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert import_keras() is keras and os.environ["KERAS_BACKEND"] == "tensorflow"
    monkeypatch.setitem(sys.modules, "keras", None)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(ValueError, match=r'needs Keras 3: pip install "gradflow\[keras\]"'):
        import_keras()


@pytest.mark.slow
@pytest.mark.skipif(any(m in sys.modules or __import__("importlib").util.find_spec(m) for m in ("tensorflow",)),
                    reason="the fallback is for a configured backend that is not installed")
@pytest.mark.usefixtures("keras_building")
def test_a_configured_backend_that_is_not_installed_falls_back_to_jax(tmp_path):
    _keras_model([L.GRU(5), L.Dense(1)]).save(tmp_path / "m.keras")
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True)
    (home / ".keras" / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "KERAS_HOME")}
    script = ("import os; from gradflow.data.keras_files import load_keras_model; "
              f"m = load_keras_model({str(tmp_path / 'm.keras')!r}); import keras; "
              "print(m.hidden_size, os.environ['KERAS_BACKEND'], keras.config.backend())")
    done = subprocess.run([sys.executable, "-c", script], env={**env, "HOME": str(home)}, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["5", "jax", "jax"]
