"""Counterfactual diagnosis: learning rates that diverge or barely move, a loss plateau, labels without
signal, and the remedies' table, on small setups trained side by side."""

import numpy as np
import pytest

from gradflow.config.profiles import ConfigError
from gradflow.diagnose.counterfactual import diagnose_setup, parse_setup, remedies

SETUP = """\
[data]
task = "recall"
n = 96
seq_len = 4
features = 2

[model]
hidden_size = 6
activation = "relu"

[train]
optimizer = "adam"
learning_rate = 0.03
epochs = 30
batch_size = 16
seeds = 2
"""


def _diagnose(text):
    return diagnose_setup(parse_setup(text), show_progress=False)


def test_remedies_are_those_that_change_something():
    names = list(remedies(parse_setup(SETUP)))
    assert names == ["as given", "label_shuffle_control", "learning_rate_x0.1", "learning_rate_x10",
                     "tanh_instead_of_relu", "orthogonal_init", "gradient_clipping"]  # forget bias is already 1
    tanh = parse_setup(SETUP.replace('"relu"', '"tanh"').replace("seeds = 2", "seeds = 2\nl2 = 0.01"))
    assert "tanh_instead_of_relu" not in remedies(tanh) and remedies(tanh)["no_regularization"] == {"l2": 0.0, "weight_decay": 0.0}


def test_a_learnable_setup_learns_and_its_real_labels_beat_the_shuffled_control():
    d = _diagnose(SETUP)
    assert d.remedies["as given"]["verdict"] == "learned" and not d.collapsed
    assert d.checks["data_variability"]["label_shuffle_control"] == "the real labels do better"
    assert d.checks["loss_plateau"]["status"] == "ok" and d.checks["learning_rate"]["status"] == "ok"
    assert d.remedies["label_shuffle_control"]["verdict"] != "learned"
    assert d.remedies["label_shuffle_control"]["changes_outcome"]
    table = "\n".join(d.extras["markdown"])
    assert "| label_shuffle_control |" in table and "changes the outcome" in table


def test_a_learning_rate_that_barely_moves_is_too_low_and_a_plateau():
    d = _diagnose(SETUP.replace("learning_rate = 0.03", "learning_rate = 1e-7"))
    assert d.checks["learning_rate"]["status"] == "fail" and d.checks["learning_rate"]["direction"] == "too_low"
    assert d.checks["loss_plateau"]["status"] == "fail"
    assert {"learning_rate_too_low", "loss_plateau"} <= set(d.likely_causes)
    assert d.remedies["learning_rate_x10"]["val_loss"] <= d.remedies["as given"]["val_loss"] + 1e-3


def test_a_learning_rate_that_diverges_is_too_high():
    text = SETUP.replace('optimizer = "adam"', 'optimizer = "sgd"').replace("learning_rate = 0.03", "learning_rate = 1000.0")
    d = _diagnose(text)
    assert d.checks["learning_rate"]["status"] == "fail" and d.checks["learning_rate"]["direction"] == "too_high"
    assert "learning_rate_too_high" in d.likely_causes


def test_random_labels_show_no_signal():
    d = _diagnose(SETUP.replace('task = "recall"', 'task = "seed"').replace("features = 2", "features = 3"))
    assert d.checks["data_variability"]["label_shuffle_control"] == "no difference"
    assert "no_signal_in_data" in d.likely_causes and not d.remedies["as given"]["verdict"] == "learned"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('task = "recall"', 'task = "copy"', r"\[data\]\.task: 'copy' is not one of"),
        ("epochs = 30", "epochs = 0", r"\[train\]\.epochs must hold integers >= 1"),
        ("learning_rate = 0.03", "learning_rate = -1.0", r"\[train\]\.learning_rate must be positive"),
        ("[model]", "[model]\ndepth = 2", r"\[model\]: unknown key\(s\) \['depth'\]"),
    ],
)
def test_bad_setups_name_the_key(old, new, message):
    with pytest.raises(ConfigError, match=message):
        parse_setup(SETUP.replace(old, new))
