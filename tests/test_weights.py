"""Weight files: Keras and PyTorch layouts give the same LSTM; malformed files name the key and shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.data.weights import load_model, model_from_arrays

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
    assert (a.layout, b.layout) == ("keras", "pytorch") and (a.hidden_size, a.input_size) == (H, D)
    for x, y in zip(a.params, b.params):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
    xs = jnp.asarray(rng.normal(size=(7, D)), jnp.float32)
    ha = gf.unroll(jax.tree.map(jnp.asarray, a.params), xs).h
    hb = gf.unroll(jax.tree.map(jnp.asarray, b.params), xs).h
    np.testing.assert_allclose(ha, hb, rtol=1e-5, atol=1e-6)


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
