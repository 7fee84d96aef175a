"""Weight files: Keras and PyTorch layouts give the same LSTM (stacked and bidirectional PyTorch LSTMs their
stack); malformed files name the key and shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.data.weights import load_model, model_from_arrays, weights_layout
from gradflow.lstm.model import Bidirectional, Layer, Model, final_state, hidden_states

H, D = 4, 3


def _keras(rng):
    return {"kernel": rng.normal(size=(D, 4 * H)), "recurrent_kernel": rng.normal(size=(H, 4 * H)),
            "bias": rng.normal(size=4 * H), "head_kernel": rng.normal(size=(H, 1)), "head_bias": np.array([0.3])}


def test_pytorch_state_dict_names_give_the_same_lstm(tmp_path):
    rng = np.random.default_rng(0)
    k = _keras(rng)
    bias_ih = rng.normal(size=4 * H)
    torch = {"weight_ih_l0": k["kernel"].T, "weight_hh_l0": k["recurrent_kernel"].T, "bias_ih_l0": bias_ih,
             "bias_hh_l0": k["bias"] - bias_ih, "head_kernel": k["head_kernel"], "head_bias": k["head_bias"]}
    np.savez(tmp_path / "keras.npz", **k)
    np.savez(tmp_path / "torch.npz", **torch)
    a, b = load_model(tmp_path / "keras.npz"), load_model(tmp_path / "torch.npz")
    assert (weights_layout(k), weights_layout(torch)) == ("keras", "pytorch")
    assert (a.hidden_size, a.input_size) == (H, D)
    assert isinstance(a, Model) and isinstance(b, Model) and len(a.layers) == len(b.layers) == 1
    for x, y in zip(a.layers[0].params, b.layers[0].params):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
    xs = jnp.asarray(rng.normal(size=(7, D)), jnp.float32)
    ha = gf.unroll(jax.tree.map(jnp.asarray, a.layers[0].params), xs).h
    hb = gf.unroll(jax.tree.map(jnp.asarray, b.layers[0].params), xs).h
    np.testing.assert_allclose(ha, hb, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.head.kernel, k["head_kernel"].astype(np.float32))
    assert a.head.output == "linear"  # a file does not say how its head is applied: the caller does
    assert load_model(tmp_path / "keras.npz", head_output="sigmoid").head.output == "sigmoid"


def _torch_layer(rng, d, suffix):
    return {f"weight_ih{suffix}": rng.normal(size=(4 * H, d)), f"weight_hh{suffix}": rng.normal(size=(4 * H, H)),
            f"bias_ih{suffix}": rng.normal(size=4 * H), f"bias_hh{suffix}": rng.normal(size=4 * H)}


def test_a_stacked_bidirectional_pytorch_lstm_is_its_stack(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {**_torch_layer(rng, D, "_l0"), **_torch_layer(rng, D, "_l0_reverse"), **_torch_layer(rng, 2 * H, "_l1"),
              "head_kernel": rng.normal(size=(H, 2))}
    np.savez(tmp_path / "stack.npz", **arrays)
    model = load_model(tmp_path / "stack.npz", activation="softsign")
    assert [type(level) for level in model.layers] == [Bidirectional, Layer]
    assert model.layers[0].backward.direction == "backward" and model.layers[1].activation == "softsign"
    assert (model.input_size, model.hidden_size, model.output_size) == (D, H, 2)

    def layer(suffix):
        p = [arrays[f"weight_ih{suffix}"].T, arrays[f"weight_hh{suffix}"].T,
             arrays[f"bias_ih{suffix}"] + arrays[f"bias_hh{suffix}"]]
        return gf.LSTMParams(*(jnp.asarray(x, jnp.float32) for x in p))

    xs = jnp.asarray(rng.normal(size=(5, D)), jnp.float32)
    below = jnp.concatenate([gf.unroll(layer("_l0"), xs, activation="softsign").h,
                             gf.unroll(layer("_l0_reverse"), xs[::-1], activation="softsign").h[::-1]], axis=-1)
    want = gf.unroll(layer("_l1"), below, activation="softsign").h
    np.testing.assert_allclose(hidden_states(model, xs), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final_state(model, xs), want[-1], rtol=1e-5, atol=1e-6)
    arrays["weight_ih_l1"] = rng.normal(size=(4 * H, H))
    with pytest.raises(ValueError, match=r"weight_ih_l1 must have shape \(4H, 8\) to take the 8 features of level l0"):
        model_from_arrays(arrays)
    with pytest.raises(ValueError, match=r"head_kernel must have shape \(2H, k\) = \(8, 1\)"):
        model_from_arrays({**_torch_layer(rng, D, "_l0"), **_torch_layer(rng, D, "_l0_reverse"),
                           "head_kernel": np.zeros((H, 1))})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.pop("bias"), r"missing key 'bias', expected \(4H,\)"),
        (lambda a: a.update(kernel=np.zeros((D, 4 * H + 1))), r"kernel must have shape \(D, 4H\) = \(3, 16\); got \(3, 17\)"),
        (lambda a: a.update(recurrent_kernel=np.zeros((H, 3 * H))), r"recurrent_kernel must have shape \(H, 4H\) = \(4, 16\); got \(4, 12\)"),
        (lambda a: a.update(bias=np.full(4 * H, np.nan)), r"bias holds 16 non-finite values"),
        (lambda a: a.update(head_kernel=np.zeros((H + 1, 1))), r"head_kernel must have shape \(H, k\) = \(4, 1\); got \(5, 1\)"),
        (lambda a: a.update(head_bias=np.zeros(2)), r"head_bias must have shape \(k,\) = \(1,\); got \(2,\)"),
        (lambda a: a.pop("head_kernel"), r"head_bias given without head_kernel"),
        (lambda a: [a.pop(k) for k in list(a)] and a.update(w=np.zeros(3)), r"no LSTM weights found; expected Keras keys"),
    ],
)
def test_malformed_weights_name_the_key_and_expected_shape(tmp_path, edit, message):
    arrays = _keras(np.random.default_rng(1))
    edit(arrays)
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_model(tmp_path / "w.npz")


def test_missing_pytorch_keys_and_files():
    with pytest.raises(ValueError, match=r"missing key 'bias_hh_l0', expected \(4H,\)"):
        model_from_arrays({"weight_ih_l0": np.zeros((16, 3)), "weight_hh_l0": np.zeros((16, 4)), "bias_ih_l0": np.zeros(16)})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model("/nonexistent/w.npz")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"fc.weight": np.zeros((1, H)), "fc.bias": np.zeros(1)}, r"unknown key\(s\) \['fc.bias', 'fc.weight'\]"),
        ({"dense_kernel": np.zeros((H, 1))}, r"unknown key\(s\) \['dense_kernel'\]; understood"),
        ({"weight_ih_l0": np.zeros((4 * H, D))}, r"both Keras keys \['bias', 'kernel', 'recurrent_kernel'\] and PyTorch keys \['weight_ih_l0'\]"),
    ],
)
def test_unknown_or_mixed_keys_are_refused_naming_them(extra, message):
    arrays = {**_keras(np.random.default_rng(3)), **extra}
    with pytest.raises(ValueError, match=message):
        model_from_arrays(arrays)


def test_pytorch_keys_beyond_the_stack_read_are_refused():
    rng = np.random.default_rng(4)
    gap = {**_torch_layer(rng, D, "_l0"), **_torch_layer(rng, H, "_l2")}  # no l1: l2 would be ignored
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bias_hh_l2', 'bias_ih_l2', 'weight_hh_l2', 'weight_ih_l2'\]"):
        model_from_arrays(gap)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['dense_kernel'\] in the recurrent module ''; understood: "
                                         r"PyTorch nn.LSTM / nn.GRU names"):
        model_from_arrays({**_torch_layer(rng, D, "_l0"), "dense_kernel": np.zeros((H, 1))})


def test_a_pytorch_head_in_an_npz_is_read_once():
    """A PyTorch Linear head (fc.weight, fc.bias) is the model's head, never ignored; given twice it is refused."""
    rng = np.random.default_rng(6)
    arrays = {**_torch_layer(rng, D, "_l0"), "fc.weight": rng.normal(size=(2, H)), "fc.bias": rng.normal(size=2)}
    model = model_from_arrays(arrays, head_output="softmax")
    np.testing.assert_array_equal(model.head.kernel, arrays["fc.weight"].T.astype(np.float32))
    np.testing.assert_array_equal(model.head.bias, arrays["fc.bias"].astype(np.float32))
    assert model.head.output == "softmax"
    with pytest.raises(ValueError, match=r"two heads: \['head_kernel'\] and a PyTorch Linear layer"):
        model_from_arrays({**arrays, "head_kernel": np.zeros((H, 1))})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("kernel", np.zeros((D, 4 * H), np.complex64), r"kernel must be real numbers \(D, 4H\); got dtype complex64"),
        ("head_kernel", np.full((H, 1), 1e300), r"head_kernel holds 4 values beyond the float32 range"),
    ],
)
def test_complex_or_out_of_range_weights_are_refused(key, value, message):
    arrays = {**_keras(np.random.default_rng(5)), key: value}
    with pytest.raises(ValueError, match=message):
        model_from_arrays(arrays)


def test_pytorch_npz_files_hold_grus_under_key_prefixes(tmp_path):
    rng = np.random.default_rng(7)
    shapes = {"weight_ih_l0": (3 * H, D), "weight_hh_l0": (3 * H, H), "bias_ih_l0": (3 * H,), "bias_hh_l0": (3 * H,)}
    arrays = {f"encoder.rnn.{name}": rng.normal(size=shape) for name, shape in shapes.items()}
    np.savez(tmp_path / "gru.npz", **arrays, head_kernel=rng.normal(size=(H, 1)), **{"embedding.weight": np.ones((9, D))})
    model = load_model(tmp_path / "gru.npz", activation="softsign")
    assert weights_layout(arrays) == "pytorch" and (model.layers[0].cell, model.layers[0].activation) == ("gru", "softsign")
    assert model.head.kernel.shape == (H, 1)
    params = gf.GRUParams(*(jnp.asarray(a, jnp.float32) for a in (
        arrays["encoder.rnn.weight_ih_l0"].T, arrays["encoder.rnn.weight_hh_l0"].T, arrays["encoder.rnn.bias_ih_l0"],
        arrays["encoder.rnn.bias_hh_l0"])))
    xs = jnp.asarray(rng.normal(size=(5, D)), jnp.float32)
    np.testing.assert_allclose(hidden_states(model, xs), gf.gru_unroll(params, xs, activation="softsign"),
                               rtol=1e-5, atol=1e-6)
