"""The seed examples (results/seed_examples.md), trained and saved as an .npz, a PyTorch state dict and a Keras
file, get the same diagnosis from each file: the importers hand diagnose the same model."""

import importlib.util
import math
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow.config import parse_config
from gradflow.data.tasks import split
from gradflow.training.train import TrainGrid, TrainSpec, settings_arrays, train_data, train_variants

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3  # enough to move every weight off its initialisation; the examples' own runs use 100


def _examples():
    spec = importlib.util.spec_from_file_location("seed_examples", ROOT / "scripts" / "seed_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained():
    """Each example's setup (seed 0) trained for a few epochs: (name, activation, model, validation task)."""
    examples = _examples()
    out = []
    for example in examples.EXAMPLES:
        text = examples.setup_text(example, seeds=1).replace("epochs = 100", f"epochs = {EPOCHS}")
        config = parse_config(text, command="diagnose")
        task = config.make_task()
        train, val = split(task, validation=config.data.validation, seed=config.data.data_seed)
        steps, _ = config.train.schedule(train.n)
        spec = TrainSpec.for_task(train, hidden_size=config.model.hidden_size[0], activation=config.model.activation[0],
                                  optimizer="adam", steps=steps, batch_size=min(32, train.n), checkpoints=1)
        g = config.grid
        grid = TrainGrid(forget_bias=g.forget_bias, scheme=g.scheme, learning_rate=g.learning_rate, l2=g.l2, seed=[0])
        with jax.numpy_dtype_promotion("standard"):
            result = train_variants(spec, settings_arrays(grid.values()), train_data(train, val))
        model = jax.tree.map(lambda a: np.asarray(a[0], np.float32), result["final_model"])
        out.append((example["name"], config.model.activation[0], model, val))
    return out


def _save_npz(model, path):
    p = model.layers[0].params
    np.savez(path, kernel=p.W, recurrent_kernel=p.U, bias=p.b, head_kernel=model.head.kernel,
             head_bias=model.head.bias)


def _save_torch(model, path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self, D, H):
            super().__init__()
            self.lstm = torch.nn.LSTM(D, H, batch_first=True)
            self.fc = torch.nn.Linear(H, 1)

    p, head = model.layers[0].params, model.head
    net = Net(model.input_size, model.hidden_size)
    with torch.no_grad():
        net.lstm.weight_ih_l0.copy_(torch.from_numpy(np.array(p.W.T)))
        net.lstm.weight_hh_l0.copy_(torch.from_numpy(np.array(p.U.T)))
        net.lstm.bias_ih_l0.copy_(torch.from_numpy(np.array(p.b)))
        net.lstm.bias_hh_l0.zero_()
        net.fc.weight.copy_(torch.from_numpy(np.array(head.kernel.T)))
        net.fc.bias.copy_(torch.from_numpy(np.array(head.bias)))
    torch.save(net.state_dict(), path)


def _same_diagnosis(a, b):
    assert {k: c["status"] for k, c in a.checks.items()} == {k: c["status"] for k, c in b.checks.items()}
    assert a.likely_causes == b.likely_causes and a.collapsed == b.collapsed
    for name, check in a.checks.items():
        for key, value in check.items():
            other = b.checks[name][key]
            if isinstance(value, float) and math.isfinite(value):
                assert other == pytest.approx(value, rel=1e-4, abs=1e-6), (name, key)
            elif not isinstance(value, (dict, float)):
                assert other == value, (name, key)
    np.testing.assert_allclose(a.evidence.lag_profile, b.evidence.lag_profile, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_each_seed_example_saved_as_pytorch_gives_the_npz_diagnosis(trained, tmp_path):
    pytest.importorskip("torch")
    judged = 0
    for name, activation, model, val in trained:
        if activation != "tanh":
            continue  # nn.LSTM has no relu cell: the relu example cannot be a PyTorch model
        _save_npz(model, tmp_path / f"{name}.npz")
        _save_torch(model, tmp_path / f"{name}.pt")
        from_npz = gf.diagnose(gf.load_model(tmp_path / f"{name}.npz", head_output="sigmoid"), val)
        from_torch = gf.diagnose(gf.load_model(tmp_path / f"{name}.pt", head_output="sigmoid"), val)
        _same_diagnosis(from_npz, from_torch)
        judged += 1
    assert judged == 2


def _save_keras(model, activation, path):
    from gradflow.data.keras_files import import_keras, keras_numerics

    keras = import_keras()
    p, head = model.layers[0].params, model.head
    with keras_numerics():
        net = keras.Sequential([keras.Input((None, model.input_size)),
                                keras.layers.LSTM(model.hidden_size, activation=activation),
                                keras.layers.Dense(1, activation="sigmoid")])
        net.layers[0].set_weights([np.array(p.W), np.array(p.U), np.array(p.b)])
        net.layers[1].set_weights([np.array(head.kernel), np.array(head.bias)])
        net.save(path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_each_seed_example_saved_as_keras_gives_the_npz_diagnosis(trained, tmp_path):
    from gradflow.data.keras_files import import_keras

    try:
        import_keras()  # falls back to the JAX backend when the configured one is not installed
    except ValueError:
        pytest.skip("keras is not installed")
    for name, activation, model, val in trained:  # the relu example too: a Keras LSTM takes activation="relu"
        _save_npz(model, tmp_path / f"{name}.npz")
        _save_keras(model, activation, tmp_path / f"{name}.keras")
        from_npz = gf.diagnose(gf.load_model(tmp_path / f"{name}.npz", head_output="sigmoid", activation=activation), val)
        from_keras = gf.diagnose(gf.load_model(tmp_path / f"{name}.keras"), val)  # the file says sigmoid and relu
        assert gf.load_model(tmp_path / f"{name}.keras").layers[0].activation == activation
        _same_diagnosis(from_npz, from_keras)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_the_command_line_diagnoses_the_files_alike_and_keeps_a_keras_head_s_own_output(trained, tmp_path, capsys):
    import json

    from gradflow.cli import main
    from gradflow.data.keras_files import import_keras

    try:
        import_keras()
    except ValueError:
        pytest.skip("keras is not installed")
    name, activation, model, val = trained[0]
    _save_npz(model, tmp_path / "m.npz")
    _save_keras(model, activation, tmp_path / "m.keras")
    np.savez(tmp_path / "val.npz", X=val.X, y=val.y)
    reports = []
    for file in ("m.npz", "m.keras"):
        assert main(["diagnose", "--weights", str(tmp_path / file), "--data", str(tmp_path / "val.npz"), "--json",
                     "--out", str(tmp_path / file.replace(".", "_"))]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    for key in ("spread_ratio", "prediction_std", "loss_ratio_to_best_constant"):
        assert reports[0]["checks"]["output_collapse"][key] == pytest.approx(
            reports[1]["checks"]["output_collapse"][key], rel=1e-4)
    assert {k: c["status"] for k, c in reports[0]["checks"].items()} == {
        k: c["status"] for k, c in reports[1]["checks"].items()}
    keras_head = gf.load_model(tmp_path / "m.keras").head
    assert keras_head.output == "sigmoid"  # from the file; the labels' kind would give the same here, so:
    relabelled = val.y * 0.5 + 0.25  # regression-looking targets: an .npz head becomes linear, a Keras one stays
    np.savez(tmp_path / "reg.npz", X=val.X, y=relabelled)
    assert main(["diagnose", "--weights", str(tmp_path / "m.keras"), "--data", str(tmp_path / "reg.npz"), "--json",
                 "--out", str(tmp_path / "reg")]) == 0
    kept = json.loads(capsys.readouterr().out)["checks"]["output_collapse"]["loss_ratio_to_best_constant"]
    from gradflow.diagnose.checks import best_constant_loss
    from gradflow.lstm.model import head_logits, head_loss

    keras_model = gf.load_model(tmp_path / "m.keras")
    logits = jax.vmap(lambda x: head_logits(keras_model, x))(val.X)
    ratio = {out: float(head_loss(out, logits, relabelled)) / best_constant_loss(out, relabelled)
             for out in ("sigmoid", "linear")}
    assert kept == pytest.approx(ratio["sigmoid"], rel=1e-5) and kept != pytest.approx(ratio["linear"], rel=1e-2)
