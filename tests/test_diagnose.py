"""Every check detects a model built to fail it, a healthy trained model passes, and the command line
prints one JSON object in the documented vocabulary."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.cli import main
from gradflow.collapse.metrics import constant_loss
from gradflow.diagnose.checks import CAUSES, CHECKS, diagnose_model
from gradflow.data.tasks import recall_task, split, task_from_arrays
from gradflow.training.train import TrainGrid, TrainSpec, settings_arrays, train_data, train_variants
from gradflow.lstm.model import Bidirectional, Head, Layer, Model

H, D, T = 8, 2, 30
TASK = recall_task(200, seq_len=T, features=D, seed=0)


def _model(*, scale=1.0, bias=(0.0, 1.0, 0.0, 0.0), recurrent=1.0, head=True, seed=0, activation="tanh",
           output="sigmoid"):
    p = gf.init_lstm(jax.random.key(seed), D, H, scheme="glorot_uniform", dtype=jnp.float32)
    b = np.concatenate([np.full(H, v, np.float32) for v in bias])
    head_kernel = np.random.default_rng(seed).normal(size=(H, 1)).astype(np.float32)
    layer = Layer(gf.LSTMParams(np.asarray(p.W) * scale, np.asarray(p.U) * scale * recurrent, b), activation=activation)
    return Model((layer,), Head(head_kernel, np.zeros(1, np.float32), output) if head else None)


def _statuses(d):
    return {name: check["status"] for name, check in d.checks.items()}


@pytest.fixture(scope="module")
def healthy():
    """An LSTM trained on a recall task it can learn (T = 6)."""
    task = recall_task(256, seq_len=6, features=D, seed=1)
    train, val = split(task)
    spec = TrainSpec.for_task(task, hidden_size=H, steps=200, batch_size=32, checkpoints=1, grad_probe=1)
    with jax.numpy_dtype_promotion("standard"):
        out = train_variants(spec, settings_arrays(TrainGrid(learning_rate=[0.02], seed=[0]).values()),
                             train_data(train, val))
    return jax.tree.map(lambda a: np.asarray(a[0], np.float32), out["final_model"]), task


@pytest.mark.slow
def test_a_healthy_trained_model_is_not_flagged(healthy):
    model, val = healthy
    d = diagnose_model(model, val)
    assert not d.collapsed and d.likely_causes == []
    assert "fail" not in _statuses(d).values(), _statuses(d)  # trained gates may saturate somewhat: warn at most
    assert d.checks["output_collapse"]["spread_ratio"] > 0.5
    assert d.checks["output_collapse"]["loss_ratio_to_best_constant"] < 0.5


@pytest.mark.slow
def test_saturated_gates_are_detected():
    d = diagnose_model(_model(bias=(8.0, 8.0, 8.0, 8.0)), TASK)
    assert d.checks["gate_saturation"]["status"] == "fail" and "gate_saturation" in d.likely_causes
    assert min(d.checks["gate_saturation"]["fraction_saturated"].values()) > 0.9


def test_shrunken_weights_are_detected_as_over_regularisation():
    d = diagnose_model(_model(scale=0.01), TASK)
    assert d.checks["weight_norms"]["status"] == "fail" and "over_regularization" in d.likely_causes
    unscaled = diagnose_model(_model(), TASK).checks["weight_norms"]
    assert unscaled["status"] == "ok" and 0.8 < unscaled["largest_ratio_to_initial"] < 1.25  # at its initial scale
    assert d.checks["weight_norms"]["largest_ratio_to_initial"] == pytest.approx(0.01 * unscaled["largest_ratio_to_initial"], rel=1e-5)


def test_dead_relu_units_are_detected_and_the_output_collapses():
    d = diagnose_model(_model(bias=(0.0, 1.0, -20.0, 0.0), activation="relu"), TASK)
    assert d.checks["dead_units"]["status"] == "fail" and d.checks["dead_units"]["fraction_dead"] == 1.0
    assert d.collapsed and d.checks["output_collapse"]["spread_ratio"] == 0.0
    assert d.likely_causes[:1] == ["dead_units"] or "dead_units" in d.likely_causes


def test_vanishing_and_exploding_gradients_are_detected():
    vanishing = diagnose_model(_model(bias=(0.0, -10.0, 0.0, 0.0), recurrent=0.1), TASK)
    assert vanishing.checks["vanishing_gradients"]["status"] == "fail"
    assert vanishing.checks["vanishing_gradients"]["log10_norm_at_lag_T_minus_1"] < -10
    exploding = diagnose_model(_model(bias=(10.0, 10.0, 0.0, 10.0), recurrent=6.0, activation="linear"), TASK)
    assert exploding.checks["exploding_gradients"]["status"] == "fail"
    assert exploding.checks["exploding_gradients"]["max_log10_norm"] > 5
    assert "exploding_gradients" in exploding.likely_causes and "vanishing_gradients" in vanishing.likely_causes


@pytest.mark.slow
def test_labels_without_signal_and_too_little_data_are_detected():
    constant = task_from_arrays({"X": TASK.X, "y": np.ones(TASK.n)}, name="constant")
    d = diagnose_model(_model(), constant)
    assert d.checks["data_variability"]["status"] == "fail" and "no_signal_in_data" in d.likely_causes
    few = task_from_arrays({"X": TASK.X[:20], "y": TASK.y[:20]}, name="few")
    d = diagnose_model(_model(), few)
    assert d.checks["data_variability"]["status"] == "warn" and "too_little_data" in d.likely_causes


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match="the weights take 2 input features but the data X has 3"):
        diagnose_model(_model(), recall_task(10, seq_len=4, features=3))
    with pytest.raises(ValueError, match=r"unknown threshold\(s\) \['spread'\]"):
        diagnose_model(_model(), TASK, thresholds={"spread": 0.2})
    with pytest.raises(ValueError, match="output='tanh' is not a known head output"):
        diagnose_model(_model(output="tanh"), TASK)


def _vanishing_layer(key, d):
    """A layer whose gradient vanishes: forget gate closed (bias -8), tiny recurrent weights."""
    p = gf.init_lstm(key, d, H, scheme="glorot_uniform", dtype=jnp.float32)
    b = np.concatenate([np.full(H, v, np.float32) for v in (0.0, -8.0, 0.0, 0.0)])
    return Layer(gf.LSTMParams(np.asarray(p.W), 0.01 * np.asarray(p.U), b))


def test_a_stack_is_judged_whole_and_names_the_layer(tmp_path, capsys):
    """Behaviour change (0.3): stacks and bidirectional models are judged layer by layer, never by their first."""
    healthy = _model().layers[0]
    head = Head(np.ones((H, 1), np.float32), np.zeros(1, np.float32), "sigmoid")
    top_vanishes = diagnose_model(Model((healthy, _vanishing_layer(jax.random.key(1), H)), head), TASK)
    alone = diagnose_model(Model((healthy,), head), TASK)
    assert alone.checks["vanishing_gradients"]["status"] != "fail"  # the first layer alone passes ...
    vanishing = top_vanishes.checks["vanishing_gradients"]
    assert vanishing["status"] == "fail" and vanishing["layer"] == "1 forward"  # ... the stack does not
    assert vanishing["per_layer"]["0 forward"]["status"] == alone.checks["vanishing_gradients"]["status"]
    assert set(top_vanishes.evidence.layer_profiles) == {"0 forward", "1 forward"}
    np.testing.assert_array_equal(top_vanishes.evidence.lag_profile, top_vanishes.evidence.layer_profiles["1 forward"])
    np.testing.assert_allclose(top_vanishes.evidence.layer_profiles["0 forward"], alone.evidence.lag_profile, rtol=1e-6)
    assert "vanishing_gradients" in top_vanishes.likely_causes

    backward = _vanishing_layer(jax.random.key(2), D).replace(direction="backward")
    pair = diagnose_model(Model((Bidirectional(healthy, backward),),
                                Head(np.ones((2 * H, 1), np.float32), np.zeros(1, np.float32), "sigmoid")), TASK)
    assert pair.checks["vanishing_gradients"]["layer"] == "0 backward"
    assert set(pair.evidence.gates) == {"0 forward", "0 backward"}

    rng = np.random.default_rng(0)  # a stacked PyTorch file through the command line: judged whole
    stacked = {}
    for k, d in ((0, D), (1, H)):
        stacked.update({f"weight_ih_l{k}": rng.normal(size=(4 * H, d)), f"weight_hh_l{k}": rng.normal(size=(4 * H, H)),
                        f"bias_ih_l{k}": rng.normal(size=4 * H), f"bias_hh_l{k}": rng.normal(size=4 * H)})
    np.savez(tmp_path / "stacked.npz", **stacked)
    np.savez(tmp_path / "data.npz", X=TASK.X, y=TASK.y)
    assert main(["diagnose", "--weights", str(tmp_path / "stacked.npz"), "--data", str(tmp_path / "data.npz"),
                 "--json", "--out", str(tmp_path / "report")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["checks"]["gate_saturation"]["per_layer"]) == {"0 forward", "1 forward"}


@pytest.mark.parametrize("output", ["sigmoid", "linear"])
def test_the_loss_is_the_shared_head_loss_and_equals_the_former_numpy_loss(output):
    task = TASK if output == "sigmoid" else task_from_arrays({"X": TASK.X, "y": TASK.X[:, 0, 0] + 0.5}, name="sum")
    d = diagnose_model(_model(output=output), task)
    pred = d.evidence.predictions
    if output == "sigmoid":  # the numpy loss diagnose had, on clipped probabilities
        p = np.clip(pred, 1e-7, 1 - 1e-7)
        former = float(-np.mean(task.y * np.log(p) + (1 - task.y) * np.log(1 - p)))
    else:
        former = float(np.mean((pred.reshape(task.y.shape) - task.y) ** 2))
    got = d.checks["output_collapse"]["loss_ratio_to_best_constant"] * max(constant_loss(task.kind, task.y), 1e-12)
    assert got == pytest.approx(former, rel=1e-5)


def _write(tmp_path, model, task):
    p = model.layers[0].params
    arrays = {"kernel": p.W, "recurrent_kernel": p.U, "bias": p.b, "head_kernel": model.head.kernel,
              "head_bias": model.head.bias}
    np.savez(tmp_path / "model.npz", **arrays)
    np.savez(tmp_path / "data.npz", X=task.X, y=task.y)
    return str(tmp_path / "model.npz"), str(tmp_path / "data.npz")


@pytest.mark.slow
def test_the_command_line_prints_one_json_object_and_writes_a_report(tmp_path, capsys):
    weights, data = _write(tmp_path, _model(bias=(8.0, 8.0, 8.0, 8.0)), TASK)
    out = tmp_path / "report"
    assert main(["diagnose", "--weights", weights, "--data", data, "--json", "--out", str(out),
                 "--threshold", "saturation=0.99"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record) == {"collapsed", "checks", "likely_causes", "thresholds"}
    assert set(record["checks"]) <= set(CHECKS) and set(record["likely_causes"]) <= set(CAUSES)
    assert record["thresholds"]["saturation"] == 0.99 and isinstance(record["collapsed"], bool)
    assert all(c["status"] in ("ok", "warn", "fail") for c in record["checks"].values())
    assert (out / "report.md").read_text().startswith("# gradflow diagnosis")
    assert {"lag_profile.png", "gate_saturation.png", "predictions.png", "diagnosis.json"} <= {p.name for p in out.iterdir()}


def test_malformed_files_exit_2_naming_the_key(tmp_path, capsys):
    weights, data = _write(tmp_path, _model(), TASK)
    np.savez(tmp_path / "bad.npz", X=TASK.X[:, :, :1], y=TASK.y)
    assert main(["diagnose", "--weights", weights, "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "r")]) == 2
    assert "the weights take 2 input features but the data X has 1" in capsys.readouterr().err
    np.savez(tmp_path / "nan.npz", X=np.full((4, 3, 2), np.nan), y=np.zeros(4))
    assert main(["diagnose", "--weights", weights, "--data", str(tmp_path / "nan.npz")]) == 2
    assert "X holds 24 non-finite values" in capsys.readouterr().err
    assert main(["diagnose", "--weights", weights]) == 2
    assert "needs --weights MODEL (.npz, .pt/.pth, .keras) and --data DATA.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["diagnose", "--weights", weights, "--data", data, "--threshold", "x"])
    assert exit_info.value.code == 2 and "--threshold must be NAME=NUMBER; got 'x'" in capsys.readouterr().err


def test_a_zero_jacobian_is_vanishing_not_exploding():
    """Dead relu units: dh_T/dh_t is exactly zero, the lag profile -inf: vanishing fails, exploding is ok."""
    d = diagnose_model(_model(bias=(0.0, 1.0, -20.0, 0.0), activation="relu"), TASK)
    assert np.all(np.isneginf(d.evidence.lag_profile))
    vanishing, exploding = d.checks["vanishing_gradients"], d.checks["exploding_gradients"]
    assert vanishing["status"] == "fail" and "exactly zero" in vanishing["note"]
    assert exploding["status"] == "ok" and exploding["max_log10_norm"] == -np.inf
    assert "vanishing_gradients" in d.likely_causes and "exploding_gradients" not in d.likely_causes


@pytest.mark.parametrize(
    ("profile", "vanishing", "exploding", "note"),
    [
        ([-1.0, -3.0, -np.inf], "fail", "ok", "exactly zero"),
        ([1.0, 7.0, np.inf], "ok", "fail", "non-finite"),
        ([1.0, np.nan, 2.0], "ok", "fail", "non-finite"),
        ([1.0, 2.0, np.nan], "warn", "fail", "not judged"),
    ],
)
def test_non_finite_lag_profiles_are_judged_by_what_they_mean(profile, vanishing, exploding, note):
    from gradflow.diagnose.checks import THRESHOLDS, check_gradients

    v, e = check_gradients(np.array(profile, np.float32), t=THRESHOLDS)
    assert (v["status"], e["status"]) == (vanishing, exploding)
    assert note in v.get("note", "") + e.get("note", "")


def test_non_finite_or_constant_outputs_are_not_called_collapsed():
    from gradflow.diagnose.checks import THRESHOLDS, check_output_collapse

    model = _model(output="linear")
    y = TASK.X[:, 0, 0] + 0.5
    task = task_from_arrays({"X": TASK.X, "y": y}, name="sum")
    logits = np.full((TASK.n, 1), np.nan, np.float32)
    c = check_output_collapse(model, task, logits, logits[:, 0], t=THRESHOLDS)
    assert c["status"] == "warn" and "not judged" in c["note"] and "200 of 200 predictions" in c["note"]
    constant = task_from_arrays({"X": TASK.X, "y": np.ones(TASK.n)}, name="constant")
    zeros = np.zeros((TASK.n, 1), np.float32)
    c = check_output_collapse(model.replace(head=model.head.replace(output="sigmoid")), constant, zeros, zeros[:, 0],
                              t=THRESHOLDS)
    assert c["status"] == "warn" and "every target is the same" in c["note"]


def test_labels_shaped_n_by_1_give_the_same_verdict_as_labels_shaped_n():
    flat = diagnose_model(_model(), TASK)
    column = diagnose_model(_model(), task_from_arrays({"X": TASK.X, "y": TASK.y[:, None]}, name="column"))
    assert column.checks["data_variability"]["kind"] == "binary"
    assert column.to_json() == flat.to_json()


def test_a_head_that_does_not_fit_the_targets_is_refused():
    with pytest.raises(ValueError, match=r"a softmax head needs at least 2 outputs; this head has 1"):
        diagnose_model(_model(output="softmax"), TASK)
    regression = task_from_arrays({"X": TASK.X, "y": 3 * TASK.X[:, 0, 0]}, name="sum")
    with pytest.raises(ValueError, match=r"a sigmoid head takes targets in \[0, 1\]; y \(regression\) spans"):
        diagnose_model(_model(output="sigmoid"), regression)
    model = _model()
    wide = model.replace(head=Head(np.zeros((H, 3), np.float32), np.zeros(3, np.float32), "softmax"))
    soft = task_from_arrays({"X": TASK.X, "y": np.full((TASK.n, 3), 0.5)}, name="soft")
    with pytest.raises(ValueError, match=r"a softmax head takes rows of class probabilities"):
        diagnose_model(wide, soft)
    with pytest.raises(ValueError, match=r"the head has 3 outputs but y has 1 \(y shape \(200,\)\); give y as one-hot rows \(N, k\)"):
        diagnose_model(wide, TASK)
    with pytest.raises(ValueError, match=r"diagnose needs at least 2 sequences to measure a spread; the data has 1"):
        diagnose_model(model, task_from_arrays({"X": TASK.X[:1], "y": TASK.y[:1]}, name="one"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.1, True])
def test_thresholds_must_be_finite_and_in_range(value):
    with pytest.raises(ValueError, match=r"threshold collapse_spread must be a finite number >= 0"):
        diagnose_model(_model(), TASK, thresholds={"collapse_spread": value})


def test_threshold_ranges_are_checked():
    from gradflow.diagnose.checks import check_thresholds

    with pytest.raises(ValueError, match=r"threshold saturation must be a fraction in \[0, 1\]; got 1.5"):
        check_thresholds({"saturation": 1.5})
    assert check_thresholds({"saturation": 1})["saturation"] == 1.0


def test_the_command_line_refuses_what_diagnose_cannot_judge(tmp_path, capsys):
    weights, data = _write(tmp_path, _model(), TASK)
    for text in ("collapse_spread=nan", "collapse_spread=inf", "collapse_spread=-inf"):
        with pytest.raises(SystemExit) as exit_info:
            main(["diagnose", "--weights", weights, "--data", data, "--threshold", text])
        assert exit_info.value.code == 2
        assert f"--threshold {text}: the value must be a finite number" in capsys.readouterr().err
    assert main(["diagnose", "--weights", weights, "--data", data, "--head", "softmax"]) == 2
    assert "a softmax head needs at least 2 outputs; this head has 1" in capsys.readouterr().err
    assert main(["diagnose", "--weights", weights, "--data", data, "--threshold", "saturation=2"]) == 2
    assert "threshold saturation must be a fraction in [0, 1]; got 2" in capsys.readouterr().err
    p = _model().layers[0].params
    np.savez(tmp_path / "headless.npz", kernel=p.W, recurrent_kernel=p.U, bias=p.b)
    assert main(["diagnose", "--weights", str(tmp_path / "headless.npz"), "--data", data, "--head", "sigmoid"]) == 2
    assert "--head sigmoid given but the weights have no head" in capsys.readouterr().err
    np.savez(tmp_path / "complex.npz", X=TASK.X.astype(np.complex64), y=TASK.y)
    assert main(["diagnose", "--weights", weights, "--data", str(tmp_path / "complex.npz")]) == 2
    assert "X must be real numbers (N, T, D); got dtype complex64" in capsys.readouterr().err
    np.savez(tmp_path / "fc.npz", kernel=p.W, recurrent_kernel=p.U, bias=p.b, **{"fc.weight": np.zeros((1, H))})
    assert main(["diagnose", "--weights", str(tmp_path / "fc.npz"), "--data", data]) == 2
    assert "unknown key(s) ['fc.weight']" in capsys.readouterr().err


def test_non_finite_gates_are_not_counted_as_unsaturated_silently():
    from gradflow.diagnose.checks import THRESHOLDS, GateStatistics, check_saturation

    values = {g: np.full((2, 3, H), 0.5, np.float32) for g in ("input", "forget", "cell", "output")}
    values["forget"][0, 0, :2] = np.nan
    stats = GateStatistics(per_step={g: np.zeros(3) for g in values}, values=values, max_abs_h=np.ones(H))
    c = check_saturation(stats, t=THRESHOLDS)
    assert c["status"] == "warn" and c["note"].startswith("2 of 192 gate values are non-finite")
    values["forget"][:] = 0.5
    assert check_saturation(stats, t=THRESHOLDS)["status"] == "ok"


@pytest.mark.parametrize("output", ["linear", "sigmoid"])
def test_the_loss_ratio_is_against_the_best_constant_of_the_heads_own_loss(output):
    """0/1 labels judged with a linear head: MSE against the labels' variance, not against their entropy."""
    from gradflow.collapse.metrics import constant_loss
    from gradflow.diagnose.checks import best_constant_loss

    d = diagnose_model(_model(output=output), TASK)
    pred = d.evidence.predictions.astype(np.float64)
    if output == "linear":
        want = np.mean((pred - TASK.y) ** 2) / TASK.y.var()
    else:
        p = np.clip(pred, 1e-7, 1 - 1e-7)
        want = -np.mean(TASK.y * np.log(p) + (1 - TASK.y) * np.log(1 - p)) / constant_loss("binary", TASK.y)
    assert d.checks["output_collapse"]["loss_ratio_to_best_constant"] == pytest.approx(want, rel=1e-4)
    for kind, out in (("binary", "sigmoid"), ("regression", "linear")):
        assert best_constant_loss(out, TASK.y) == pytest.approx(constant_loss(kind, TASK.y))
    onehot = np.eye(3)[np.arange(12) % 3]
    assert best_constant_loss("softmax", onehot) == pytest.approx(constant_loss("multiclass", onehot)) == pytest.approx(np.log(3))


def test_a_gru_is_diagnosed_with_its_own_gates():
    """A GRU with its update gate pinned open (bias +8): h never changes, the update gate is saturated."""
    rng = np.random.default_rng(3)
    b = np.concatenate([np.zeros(H), np.full(H, 8.0), np.zeros(H)]).astype(np.float32)
    params = gf.GRUParams(rng.normal(size=(D, 3 * H)).astype(np.float32), rng.normal(size=(H, 3 * H)).astype(np.float32)
                          / np.sqrt(H), b, np.zeros(3 * H, np.float32))
    model = Model((Layer(params, cell="gru"),), Head(np.ones((H, 1), np.float32), np.zeros(1, np.float32), "sigmoid"))
    d = diagnose_model(model, TASK)
    saturation = d.checks["gate_saturation"]
    assert set(saturation["fraction_saturated"]) == {"reset", "update", "candidate"}
    assert saturation["most_saturated_gate"] == "update" and saturation["status"] == "fail"
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731  (an independent float64 unroll for the reference)
    W, U = params.W.astype(np.float64), params.U.astype(np.float64)
    h, zs = np.zeros((len(TASK.X[:256]), H)), []
    for x in TASK.X[:256].transpose(1, 0, 2):
        r = sigmoid(x @ W[:, :H] + h @ U[:, :H])
        z = sigmoid(x @ W[:, H:2 * H] + h @ U[:, H:2 * H] + 8.0)
        h = (1 - z) * np.tanh(x @ W[:, 2 * H:] + r * (h @ U[:, 2 * H:])) + z * h
        zs.append(z)
    zs = np.array(zs)
    np.testing.assert_allclose(saturation["fraction_saturated"]["update"], np.mean((zs < 0.05) | (zs > 0.95)),
                               rtol=1e-6)
