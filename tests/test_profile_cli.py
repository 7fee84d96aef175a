"""``gradflow profile``: strict JSON of every layer's lag profile and the input sensitivity, equal to the library's;
the table, the files, and clear errors for bad arguments."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradflow.cli import main
from gradflow.data.loading import load_model
from gradflow.flow.networks import model_profiles
from gradflow.profiles.report import json_number, profile_json

H, D = 3, 2


def _torch_names(rng, suffix, d, scale=0.5):
    return {f"weight_ih{suffix}": scale * rng.normal(size=(4 * H, d)), f"weight_hh{suffix}": scale * rng.normal(size=(4 * H, H)),
            f"bias_ih{suffix}": rng.normal(size=4 * H), f"bias_hh{suffix}": rng.normal(size=4 * H)}


@pytest.fixture
def stacked(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "stack.npz"
    np.savez(path, **_torch_names(rng, "_l0", D), **_torch_names(rng, "_l1", H))
    return path


def _strict(text: str) -> dict:
    def refuse(token):
        raise AssertionError(f"non-strict JSON literal {token}")

    return json.loads(text, parse_constant=refuse)


def _run_json(capsys, *argv) -> dict:
    assert main(["profile", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object on stdout
    return _strict(out)


def test_json_schema_and_values_equal_model_profiles(stacked, capsys):
    doc = _run_json(capsys, "--weights", str(stacked), "--seq-len", "12", "--input-seed", "3")
    assert set(doc) == {"cell", "layers", "input_sensitivity"} and doc["cell"] == "lstm"
    assert [set(layer) for layer in doc["layers"]] == [{"index", "direction", "hidden_size", "lag", "log10_norm_h"}] * 2
    assert [(layer["index"], layer["direction"], layer["hidden_size"]) for layer in doc["layers"]] == [
        (0, "forward", H), (1, "forward", H)]
    assert doc["layers"][0]["lag"] == list(range(1, 13)) and doc["input_sensitivity"]["lag"] == list(range(12))
    xs = jax.random.normal(jax.random.key(3), (12, D), jnp.float32)
    want = model_profiles(load_model(stacked), xs)
    for layer, expected in zip(doc["layers"], want.layers):
        np.testing.assert_allclose(layer["log10_norm_h"], expected.log10_norm_h, rtol=1e-6)
    np.testing.assert_allclose(doc["input_sensitivity"]["log10_norm"], want.input_sensitivity, rtol=1e-6)


def test_data_gives_the_mean_over_sequences_and_float64_is_float64(stacked, tmp_path, capsys):
    X = np.random.default_rng(1).normal(size=(4, 9, D))
    np.savez(tmp_path / "data.npz", X=X)  # no y: profiles do not need labels
    with jax.enable_x64(True):
        doc = _run_json(capsys, "--weights", str(stacked), "--data", str(tmp_path / "data.npz"), "--dtype", "float64")
        model = load_model(stacked)
        singles = [model_profiles(model, jnp.asarray(x.astype(np.float32), jnp.float64)) for x in X]
    want = np.mean([s.layers[1].log10_norm_h for s in singles], axis=0)
    np.testing.assert_allclose(doc["layers"][1]["log10_norm_h"], want, rtol=1e-12)
    assert main(["profile", "--weights", str(stacked), "--data", str(tmp_path / "data.npz")]) == 0
    table = capsys.readouterr().out
    assert "4 sequences, mean of log10 norms" in table and "input (end to end)" in table


def test_non_finite_values_are_strings_and_the_files_are_written(tmp_path, capsys):
    """A zero recurrent kernel makes dh_T/dh_(T-k) exactly zero with c fixed: -inf, written as "-inf"."""
    rng = np.random.default_rng(2)
    arrays = _torch_names(rng, "_l0", D)
    arrays["weight_hh_l0"] = np.zeros((4 * H, H))
    np.savez(tmp_path / "zero.npz", **arrays)
    out = tmp_path / "out"
    doc = _run_json(capsys, "--weights", str(tmp_path / "zero.npz"), "--seq-len", "5", "--out", str(out))
    assert doc["layers"][0]["log10_norm_h"] == ["-inf"] * 5
    assert all(isinstance(v, float) for v in doc["input_sensitivity"]["log10_norm"])  # x still reaches h_T
    assert _strict((out / "profile.json").read_text()) == doc
    assert (out / "lag_profiles.pdf").stat().st_size > 0 and (out / "lag_profiles.png").stat().st_size > 0
    assert [json_number(v) for v in (np.inf, -np.inf, np.nan, 2)] == ["inf", "-inf", "nan", 2.0]
    assert float("-inf") == -np.inf  # what a reader gets back


def test_bidirectional_models_have_no_input_sensitivity_and_state_profiles(tmp_path, capsys):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "bi.npz", **_torch_names(rng, "_l0", D), **_torch_names(rng, "_l0_reverse", D))
    doc = _run_json(capsys, "--weights", str(tmp_path / "bi.npz"), "--seq-len", "4", "--wrt", "state")
    assert doc["input_sensitivity"] is None
    assert [(layer["index"], layer["direction"]) for layer in doc["layers"]] == [(0, "forward"), (0, "backward")]
    model = load_model(tmp_path / "bi.npz")
    want = model_profiles(model, jax.random.normal(jax.random.key(0), (4, D), jnp.float32), wrt="state")
    np.testing.assert_allclose(doc["layers"][1]["log10_norm_h"], want.layers[1].log10_norm_h, rtol=1e-6)
    assert profile_json(want) == doc


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seq-len", "5", "--data", "DATA"], "give --data DATA.npz or --seq-len T"),
        ([], "needs --data DATA.npz"),
        (["--seq-len", "0"], "must be a positive integer"),
        (["--data", "WRONG_D"], r"data X must have shape \(N, T, 2\)"),
        (["--data", "NAN"], "X holds 1 non-finite values"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(stacked, tmp_path, capsys, argv, message):
    np.savez(tmp_path / "data.npz", X=np.zeros((2, 3, D)))
    np.savez(tmp_path / "wrong.npz", X=np.zeros((2, 3, D + 1)))
    np.savez(tmp_path / "nan.npz", X=np.where(np.arange(6).reshape(1, 3, 2) == 4, np.nan, 0.0))
    paths = {"DATA": tmp_path / "data.npz", "WRONG_D": tmp_path / "wrong.npz", "NAN": tmp_path / "nan.npz"}
    argv = [str(paths.get(a, a)) for a in argv]
    assert main(["profile", "--weights", str(stacked), *argv]) == 2
    err = capsys.readouterr().err
    assert "gradflow profile: error:" in err
    assert __import__("re").search(message, err), err


def test_unknown_model_file_types_are_refused(tmp_path, capsys):
    (tmp_path / "model.h5").write_bytes(b"\x89HDF")
    assert main(["profile", "--weights", str(tmp_path / "model.h5"), "--seq-len", "3"]) == 2
    assert "unknown model file type '.h5'" in capsys.readouterr().err
    assert main(["profile", "--weights", str(tmp_path / "absent.pt"), "--seq-len", "3"]) == 2
    assert "does not exist" in capsys.readouterr().err
