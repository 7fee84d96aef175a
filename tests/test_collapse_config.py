"""Collapse configs: the embedded example, every setting's validation, npz tasks."""

import numpy as np
import pytest

from gradflow.collapse.config import DEFAULT_COLLAPSE_CONFIG, load_collapse_config, parse_collapse_config
from gradflow.config.profiles import ConfigError

BASE = """\
[task]
name = "recall"
n = 40
seq_len = [3, 6]

[model]
hidden_size = 4

[train]
steps = 20
batch_size = 8
checkpoints = 2

[grid]
forget_bias = [-2.0, 2.0]
seed = [0]
"""


def test_the_embedded_example_and_a_small_config_parse():
    cfg = load_collapse_config()
    assert cfg.source == DEFAULT_COLLAPSE_CONFIG and cfg.map_axes == ("forget_bias", "seq_len")
    small = parse_collapse_config(BASE)
    assert small.shape_axes["seq_len"] == (3, 6) and small.shape_axes["n"] == (40,)
    assert small.task == {"name": "recall", "features": 1, "noise": 1.0, "validation": 0.2, "data_seed": 0}
    assert small.train == {"steps": 20, "batch_size": 8, "checkpoints": 2, "grad_probe": 4}
    assert small.grid.axes == {"forget_bias": (-2.0, 2.0), "seed": (0,)}
    assert small.map_axes == ("seq_len", "forget_bias") and small.thresholds == {"spread": 0.1, "loss": 0.9}
    seeded = parse_collapse_config(BASE.replace('name = "recall"', 'name = "seed"'))
    assert seeded.task["features"] == 10


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[model]", "[models]", r"unknown table\(s\) \['models'\]"),
        ("hidden_size = 4", "hidden = 4", r"\[model\]: unknown key\(s\) \['hidden'\]; allowed keys are"),
        ('name = "recall"', 'name = "copy"', r"\[task\]\.name: 'copy' is not one of"),
        ('name = "recall"\n', "", r"\[task\]\.name is required"),
        ("n = 40", "n = 1", r"\[task\]\.n must hold integers >= 2; got 1"),
        ("seq_len = [3, 6]", "seq_len = []", r"\[task\]\.seq_len is an empty list"),
        ('name = "recall"', 'name = "adding"\nfeatures = 3', r"\[task\]\.features is 2 for the adding problem"),
        ('name = "recall"', 'name = "npz"', r"\[task\]\.path must name the \.npz file"),
        ('name = "recall"', 'name = "recall"\npath = "x.npz"', r"\[task\]\.path is only for name = \"npz\""),
        ("steps = 20", "steps = 21", r"\[train\]\.steps \(21\) must be a multiple of \[train\]\.checkpoints \(2\)"),
        ("[train]", '[train]\noptimizer = "adagrad"', r"\[train\]\.optimizer: 'adagrad' is not one of"),
        ("seed = [0]", "seed = [0]\nlearning_rate = [0.0]", r"\[grid\]\.learning_rate must be positive"),
        ("seed = [0]", "seed = [0]\nclip_norm = -1.0", r"\[grid\]\.clip_norm must be >= 0"),
        ("seed = [0]", "seed = [0]\nl2 = nan", r"\[grid\]\.l2 must be a finite number"),
        ("seed = [0]", "seed = [0]\n[analysis]\nmap = [\"weight_scale\"]", r"\[analysis\]\.map: 'weight_scale' is not a swept"),
        ("seed = [0]", "seed = [0]\n[analysis]\nchunk_size = 0", r'\[analysis\]\.chunk_size must be a positive integer or "auto"'),
        ("seed = [0]", "seed = [0]\n[analysis]\nspread_threshold = -1", r"\[analysis\]\.spread_threshold must be positive"),
        ("[task]", "[task]\nvalidation = 1.5", r"\[task\]\.validation must be a fraction in \(0, 1\)"),
    ],
)
def test_bad_settings_name_the_key(old, new, message):
    assert old in BASE
    with pytest.raises(ConfigError, match=message):
        parse_collapse_config(BASE.replace(old, new))


def test_an_npz_task_takes_its_sizes_from_the_file(tmp_path):
    np.savez(tmp_path / "data.npz", X=np.zeros((20, 5, 3)), y=np.arange(20) % 2)
    text = BASE.replace('name = "recall"\nn = 40\nseq_len = [3, 6]', 'name = "npz"\npath = "data.npz"')
    (tmp_path / "c.toml").write_text(text)
    cfg = load_collapse_config(tmp_path / "c.toml")  # the path is relative to the config file
    assert cfg.task["path"] == str(tmp_path / "data.npz")
    with pytest.raises(ConfigError, match=r"\[task\]\.seq_len is set by the data file"):
        load_collapse_config(_write(tmp_path, text.replace('path = "data.npz"', 'path = "data.npz"\nseq_len = 5')))
    with pytest.raises(ConfigError, match=r"\[task\]\.path: data file .*missing.npz' does not exist"):
        load_collapse_config(_write(tmp_path, text.replace("data.npz", "missing.npz")))


def _write(tmp_path, text):
    path = tmp_path / "other.toml"
    path.write_text(text)
    return path
