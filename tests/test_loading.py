"""gf.load_model: one entry point for every framework's files and live objects, each read by its own reader."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradflow as gf
from gradflow.lstm.model import hidden_states

D, H, T = 3, 4, 6


def _xs():
    return np.random.default_rng(0).normal(size=(T, D)).astype(np.float32)


def test_flax_modules_and_linen_trees_go_to_the_flax_reader():
    rnn = nnx.RNN(nnx.GRUCell(D, H, rngs=nnx.Rngs(0)))
    model = gf.load_model([rnn, nnx.Linear(H, 1, rngs=nnx.Rngs(1))], head_output="sigmoid")
    assert model.layers[0].cell == "gru" and model.head.output == "sigmoid"
    np.testing.assert_allclose(hidden_states(model, _xs()), rnn(_xs()[None])[0], rtol=1e-5, atol=1e-6)
    import flax.linen as nn

    cell = nn.LSTMCell(H)
    variables = cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(1), (D,)), jnp.ones(D, jnp.float32))
    assert gf.load_model(variables).layers[0].cell == "lstm"


def test_torch_modules_and_state_dicts_go_to_the_torch_reader(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(D, H, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(H, 2)

    net = Net()
    live, state = gf.load_model(net), gf.load_model(net.state_dict())
    torch.save(net.state_dict(), tmp_path / "net.pth")
    saved = gf.load_model(tmp_path / "net.pth", head_output="softmax")
    with torch.no_grad():
        want = net.rnn(torch.from_numpy(_xs())[None])[0][0].numpy()
    for model in (live, state, saved):
        assert len(model.layers) == 2 and model.output_size == 2
        np.testing.assert_allclose(hidden_states(model, _xs()), want, rtol=1e-5, atol=1e-6)
    assert saved.head.output == "softmax" and live.head.output == "linear"


def test_keras_models_go_to_the_keras_reader(tmp_path):
    from gradflow.data.keras_files import import_keras, keras_numerics

    try:
        keras = import_keras()
    except ValueError:
        pytest.skip("keras is not installed")
    with keras_numerics():
        net = keras.Sequential([keras.Input((None, D)), keras.layers.GRU(H), keras.layers.Dense(1, "sigmoid")])
        want = np.asarray(net.layers[0](_xs()[None]))[0]
    model = gf.load_model(net)
    assert model.layers[0].cell == "gru" and model.head.output == "sigmoid"
    assert gf.load_model(net, head_output="linear").head.output == "linear"  # given, it overrides the file's
    np.testing.assert_allclose(gf.final_state(model, _xs()), want, rtol=1e-5, atol=1e-6)


def test_models_and_the_nnx_shell_pass_through_and_unknown_things_are_refused(tmp_path):
    shell = gf.LSTM(D, H, rngs=nnx.Rngs(0))
    assert gf.load_model(shell) is not None and gf.load_model(shell.model, head_output="sigmoid").head.output == "sigmoid"
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown model file type '.onnx'; gradflow reads .npz, .pt, .pth, .ckpt, .keras"):
        gf.load_model(tmp_path / "model.onnx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gf.load_model(tmp_path / "absent.keras")
    with pytest.raises((TypeError, ValueError)):
        gf.load_model(42)
