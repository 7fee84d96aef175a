"""Counterfactual diagnosis: learning rates that diverge or barely move, a loss plateau, labels without
signal, and the remedies' table, on small setups trained side by side."""

import dataclasses

import pytest

from gradflow.config import ConfigError, load_config, parse_config
from gradflow.diagnose.counterfactual import diagnose_setup, remedies
from gradflow.diagnose.report import remedy_table

SETUP = """\
[model]
input_size = 2
hidden_size = 6
activation = "relu"

[grid]
learning_rate = 0.03
seed = [0, 1]

[data]
task = "recall"
n = 96
seq_len = 4

[train]
optimizer = "adam"
epochs = 30
batch_size = 16
"""


def _setup(text):
    return parse_config(text, command="diagnose")


def _diagnose(text):
    return diagnose_setup(_setup(text), show_progress=False)


def test_remedies_are_those_that_change_something():
    names = list(remedies(_setup(SETUP)))
    assert names == ["as given", "label_shuffle_control", "learning_rate_x0.1", "learning_rate_x10",
                     "tanh_instead_of_relu", "orthogonal_init", "gradient_clipping"]  # forget bias is already 1
    tanh = _setup(SETUP.replace('"relu"', '"tanh"').replace("seed = [0, 1]", "seed = [0, 1]\nl2 = 0.01"))
    assert "tanh_instead_of_relu" not in remedies(tanh) and remedies(tanh)["no_regularization"] == {"l2": 0.0, "weight_decay": 0.0}


@pytest.mark.slow
def test_a_learnable_setup_learns_and_its_real_labels_beat_the_shuffled_control():
    d = _diagnose(SETUP)
    assert d.remedies["as given"]["verdict"] == "learned" and not d.collapsed
    assert d.checks["data_variability"]["label_shuffle_control"] == "the real labels do better"
    assert d.checks["loss_plateau"]["status"] == "ok" and d.checks["learning_rate"]["status"] == "ok"
    assert d.remedies["label_shuffle_control"]["verdict"] != "learned"
    assert d.remedies["label_shuffle_control"]["changes_outcome"]
    table = "\n".join(remedy_table(d.remedy_outcomes))
    assert "| label_shuffle_control |" in table and "changes the outcome" in table


@pytest.mark.slow
def test_a_learning_rate_that_barely_moves_is_too_low_and_a_plateau():
    d = _diagnose(SETUP.replace("learning_rate = 0.03", "learning_rate = 1e-7"))
    assert d.checks["learning_rate"]["status"] == "fail" and d.checks["learning_rate"]["direction"] == "too_low"
    assert d.checks["loss_plateau"]["status"] == "fail"
    assert {"learning_rate_too_low", "loss_plateau"} <= set(d.likely_causes)
    assert d.remedies["learning_rate_x10"]["val_loss"] <= d.remedies["as given"]["val_loss"] + 1e-3


@pytest.mark.slow
def test_a_learning_rate_that_diverges_is_too_high():
    text = SETUP.replace('optimizer = "adam"', 'optimizer = "sgd"').replace("learning_rate = 0.03", "learning_rate = 1000.0")
    d = _diagnose(text)
    assert d.checks["learning_rate"]["status"] == "fail" and d.checks["learning_rate"]["direction"] == "too_high"
    assert "learning_rate_too_high" in d.likely_causes


@pytest.mark.slow
def test_random_labels_show_no_signal():
    d = _diagnose(SETUP.replace('task = "recall"', 'task = "seed"').replace("input_size = 2", "input_size = 3"))
    assert d.checks["data_variability"]["label_shuffle_control"] == "no difference"
    assert "no_signal_in_data" in d.likely_causes and not d.remedies["as given"]["verdict"] == "learned"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('task = "recall"', 'task = "copy"', r"\[data\]\.task: 'copy' is not one of"),
        ("epochs = 30", "epochs = 0", r"\[train\]\.epochs must hold integers >= 1"),
        ("learning_rate = 0.03", "learning_rate = -1.0", r"\[grid\]\.learning_rate must hold positive numbers"),
        ("[model]", "[model]\ndepth = 2", r"\[model\]: unknown key\(s\) \['depth'\]"),
        ("[train]", "[train]\nseeds = 3", r"\[train\]: unknown key\(s\) \['seeds'\]; allowed keys are"),
        ("epochs = 30", "epochs = 30\nsteps = 90", r"\[train\]\.steps and \[train\]\.epochs exclude each other"),
        ("[data]", "[data]\ninput_seed = 0", r"\[data\]\.input_seed is not used by 'gradflow diagnose' \(it is for sweep\)"),
        # a setup is one model: every setting one value, but the seeds
        ("learning_rate = 0.03", "learning_rate = [0.03, 0.1]",
         (r"\[grid\]\.learning_rate takes one value in a diagnose setup \(one model, trained over the seeds of "
          r"\[grid\]\.seed\); got \[0\.03, 0\.1\]")),
        ("hidden_size = 6", "hidden_size = [6, 8]", r"\[model\]\.hidden_size takes one value in a diagnose setup"),
        ("n = 96", "n = [96, 192]", r"\[data\]\.n takes one value in a diagnose setup"),
        ('optimizer = "adam"', 'optimizer = ["adam", "sgd"]', r"\[train\]\.optimizer takes one value"),
    ],
)
def test_bad_setups_name_the_key(old, new, message):
    assert old in SETUP
    with pytest.raises(ConfigError, match=message):
        _setup(SETUP.replace(old, new))


def test_a_setup_is_one_model_over_several_seeds(tmp_path):
    setup = _setup(SETUP)
    assert setup.command == "diagnose" and setup.grid.seed == (0, 1) and setup.grid.axes["seed"] == (0, 1)
    assert (setup.model.hidden_size, setup.grid.learning_rate, setup.grid.scheme) == ((6,), (0.03,), ("glorot_uniform",))
    # 96 sequences, 19 held out: 77 in batches of 16 is 5 steps an epoch; 150 steps, checkpoints every 15
    assert setup.train.schedule(77) == (150, 10)
    assert _setup(SETUP.replace("seed = [0, 1]\n", "")).grid.seed == (0, 1, 2)  # three seeds unless told
    (tmp_path / "setup.toml").write_text(SETUP)
    assert load_config(tmp_path / "setup.toml", command="diagnose") == dataclasses.replace(setup, source=SETUP)
    with pytest.raises(ValueError, match="diagnose_setup takes a diagnose config; got a collapse config"):
        diagnose_setup(load_config(command="collapse"))


def test_a_loss_that_is_not_finite_is_not_a_plateau_that_passes():
    """A NaN loss compared with the threshold said 'ok': a training that blew up must fail the check."""
    import numpy as np

    from gradflow.diagnose.checks import THRESHOLDS, RemedyOutcome
    from gradflow.diagnose.counterfactual import loss_plateau

    def outcome(loss):
        z = np.zeros(2)
        return RemedyOutcome("as given", z, z, z, z, np.asarray(loss, float), np.zeros((2, 1)))

    for loss in ([[np.nan] * 10 + [0.5] * 10] * 2, [[0.7] * 10 + [np.nan] * 10] * 2, [[np.inf] * 20] * 2):
        check = loss_plateau(outcome(loss), t=THRESHOLDS)
        assert check["status"] == "fail" and check["relative_improvement"] == -np.inf, check
    assert loss_plateau(outcome([[0.7] * 10 + [0.1] * 10] * 2), t=THRESHOLDS)["status"] == "ok"
