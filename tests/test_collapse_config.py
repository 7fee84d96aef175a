"""Collapse configs: the embedded example, every setting's validation, npz tasks, steps or epochs."""

import math

import numpy as np
import pytest

from gradflow.collapse.job import CollapseSpecs, collapse_job
from gradflow.config import DEFAULT_COLLAPSE_CONFIG, ConfigError, load_config, parse_config

BASE = """\
[model]
hidden_size = 4

[data]
task = "recall"
n = 40
seq_len = [3, 6]

[train]
steps = 20
batch_size = 8
checkpoints = 2

[grid]
forget_bias = [-2.0, 2.0]
seed = [0]
"""


def _parse(text):
    return parse_config(text, command="collapse")


def test_the_embedded_example_and_a_small_config_parse():
    cfg = load_config(command="collapse")
    assert cfg.source == DEFAULT_COLLAPSE_CONFIG and cfg.analysis.map == ("forget_bias", "seq_len")
    small = _parse(BASE)
    assert small.command == "collapse"
    assert small.shape_axes["seq_len"] == (3, 6) and small.shape_axes["n"] == (40,)
    d = small.data
    assert (d.task, small.model.input_size, d.noise, d.validation, d.data_seed, d.path) == ("recall", 1, 1.0, 0.2, 0, None)
    t = small.train
    assert (t.steps, t.batch_size, t.checkpoints, t.grad_probe, t.epochs) == (20, 8, 2, 4, None)
    assert small.grid.axes == {"forget_bias": (-2.0, 2.0), "seed": (0,)}
    a = small.analysis
    assert a.map == ("seq_len", "forget_bias") and (a.spread_threshold, a.loss_threshold) == (0.1, 0.9)
    seeded = _parse(BASE.replace('task = "recall"', 'task = "seed"'))
    assert seeded.model.input_size == 10
    assert _parse(BASE.replace('task = "recall"', 'task = "adding"')).model.input_size == 2


def test_resolved_holds_the_tables_of_the_one_vocabulary():
    resolved = _parse(BASE).resolved()
    assert resolved == {
        "model": {"input_size": 1, "hidden_size": [4], "activation": ["tanh"], "recurrent_activation": ["sigmoid"]},
        "grid": {"forget_bias": [-2.0, 2.0], "seed": [0]},
        "data": {"task": "recall", "n": [40], "seq_len": [3, 6], "noise": 1.0, "validation": 0.2, "data_seed": 0},
        "train": {"optimizer": ["adam"], "steps": 20, "batch_size": 8, "checkpoints": 2, "grad_probe": 4},
        "analysis": {"map": ["seq_len", "forget_bias"], "spread_threshold": 0.1, "loss_threshold": 0.9,
                     "chunk_size": "auto"},
    }


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[model]", "[models]", r"unknown table\(s\) \['models'\]"),
        ("hidden_size = 4", "hidden = 4", r"\[model\]: unknown key\(s\) \['hidden'\]; allowed keys are"),
        ('task = "recall"', 'task = "copy"', r"\[data\]\.task: 'copy' is not one of"),
        ('task = "recall"\n', "", r"\[data\]\.task is required"),
        ("n = 40", "n = 1", r"\[data\]\.n must hold integers >= 2; got 1"),
        ("seq_len = [3, 6]", "seq_len = []", r"\[data\]\.seq_len is an empty list"),
        ('hidden_size = 4\n\n[data]\ntask = "recall"', 'hidden_size = 4\ninput_size = 3\n\n[data]\ntask = "adding"',
         r"\[model\]\.input_size is 2 for the adding problem"),
        ('task = "recall"\nn = 40\nseq_len = [3, 6]', 'task = "adding"\nn = 40\nseq_len = [1, 6]',
         r"\[data\]\.seq_len must hold integers >= 2 for the adding problem; got 1"),
        ('task = "recall"', 'task = "npz"', r"\[data\]\.path must name the \.npz file"),
        ('task = "recall"', 'task = "recall"\npath = "x.npz"', r'\[data\]\.path is only for task = "npz"'),
        ("steps = 20", "steps = 21", r"\[train\]\.steps \(21\) must be a multiple of \[train\]\.checkpoints \(2\)"),
        ("steps = 20", "steps = 20\nepochs = 2", r"\[train\]\.steps and \[train\]\.epochs exclude each other"),
        ("[train]", '[train]\noptimizer = "adagrad"', r"\[train\]\.optimizer: 'adagrad' is not one of"),
        ("seed = [0]", "seed = [0]\nlearning_rate = [0.0]", r"\[grid\]\.learning_rate must hold positive numbers"),
        ("seed = [0]", "seed = [0]\nclip_norm = -1.0", r"\[grid\]\.clip_norm must hold numbers >= 0"),
        ("seed = [0]", "seed = [0]\nl2 = nan", r"\[grid\]\.l2 must hold numbers >= 0; got \[nan\]"),
        ("seed = [0]", "seed = [0]\n[analysis]\nmap = [\"weight_scale\"]", r"\[analysis\]\.map: 'weight_scale' is not a swept"),
        ("seed = [0]", "seed = [0]\n[analysis]\nchunk_size = 0", r'\[analysis\]\.chunk_size must be a positive integer or "auto"'),
        ("seed = [0]", "seed = [0]\n[analysis]\nspread_threshold = -1", r"\[analysis\]\.spread_threshold must be a positive"),
        ("[data]", "[data]\nvalidation = 1.5", r"\[data\]\.validation must be a fraction in \(0, 1\)"),
        ("[data]", "[data]\ninput_seed = 1", r"\[data\]\.input_seed is not used by 'gradflow collapse' \(it is for sweep\)"),
        ("seed = [0]", "seed = [0]\n[analysis]\ndecades = 3", r"\[analysis\]\.decades is not used by 'gradflow collapse'"),
    ],
)
def test_bad_settings_name_the_key(old, new, message):
    assert old in BASE
    with pytest.raises(ConfigError, match=message):
        _parse(BASE.replace(old, new))


def test_epochs_instead_of_steps():
    cfg = _parse(BASE.replace("steps = 20", "epochs = 4"))
    assert (cfg.train.steps, cfg.train.epochs) == (None, 4)
    # 32 training sequences in batches of 8: 4 steps per epoch; a batch larger than the data is the data
    assert cfg.train.schedule(32) == (16, 2) and cfg.train.schedule(6) == (4, 2)
    with pytest.raises(ConfigError, match=r"\[train\]\.epochs = 4 gives 16 steps for 32 training sequences, not a "
                                          r"multiple of \[train\]\.checkpoints \(5\)"):
        _parse(BASE.replace("steps = 20", "epochs = 4").replace("checkpoints = 2", "checkpoints = 5")).train.schedule(32)
    train = cfg.resolved()["train"]
    assert train["epochs"] == 4 and "steps" not in train  # the job resolves the steps (tests/test_collapse_job.py)


def test_an_npz_task_takes_its_sizes_from_the_file(tmp_path):
    np.savez(tmp_path / "data.npz", X=np.zeros((20, 5, 3)), y=np.arange(20) % 2)
    text = BASE.replace('task = "recall"\nn = 40\nseq_len = [3, 6]', 'task = "npz"\npath = "data.npz"')
    (tmp_path / "c.toml").write_text(text)
    cfg = load_config(tmp_path / "c.toml", command="collapse")  # the path is relative to the config file
    assert cfg.data.path == str(tmp_path / "data.npz")
    assert (cfg.data.n, cfg.data.seq_len, cfg.model.input_size) == (None, None, None)  # the file's, once read
    assert cfg.make_task().X.shape == (20, 5, 3)
    with pytest.raises(ConfigError, match=r"\[data\]\.seq_len is set by the data file"):
        load_config(_write(tmp_path, text.replace('path = "data.npz"', 'path = "data.npz"\nseq_len = 5')), command="collapse")
    with pytest.raises(ConfigError, match=r"\[model\]\.input_size is set by the data file"):
        load_config(_write(tmp_path, text.replace("hidden_size = 4", "hidden_size = 4\ninput_size = 3")), command="collapse")
    with pytest.raises(ConfigError, match=r"\[data\]\.path: data file .*missing.npz' does not exist"):
        load_config(_write(tmp_path, text.replace("data.npz", "missing.npz")), command="collapse")


def _write(tmp_path, text):
    path = tmp_path / "other.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("steps", ["steps = 20", "epochs = 4"])
def test_the_store_estimate_is_the_bytes_of_every_stored_variable(steps):
    cfg = _parse(BASE.replace("steps = 20", steps).replace("seed = [0]", "seed = [0, 1, 2]"))
    job = collapse_job(cfg)
    per_variant = sum(v.dtype.itemsize * math.prod(len(job.extra_coords[d]) for d in v.extra_dims)
                      for v in job.variables.values())
    assert cfg.n_variants() == (6, 2)
    assert cfg.store_bytes() == 6 * 2 * per_variant


def test_sizes_are_checked_before_any_work():
    many = BASE.replace("forget_bias = [-2.0, 2.0]", "forget_bias = {start = -3.0, stop = 3.0, num = 100000}").replace(
        "seed = [0]", "seed = {start = 0, stop = 99, num = 100}")
    with pytest.raises(ConfigError, match=r"^\[grid\]: the collapse map has 10,000,000 variants x 2 shape combinations "
                                          r"= 20,000,000 variants, more than the 10,000,000 one config may hold; its "
                                          r"store would hold about [0-9.]+ GiB"):
        _parse(many)
    explicit = _parse(BASE.replace("hidden_size = 4", "hidden_size = 2048") + "\n[analysis]\nchunk_size = 64\n")
    with pytest.raises(ConfigError, match=r"^\[analysis\]\.chunk_size = 64: training 64 variants of TrainSpec\(.*\) needs "
                                          r"about [0-9.]+ GiB, more than the memory budget of 2\.0 GiB "
                                          r"\(\[analysis\]\.memory_budget_mb = 2048\); lower chunk_size"):
        CollapseSpecs(explicit).work_chunk_size()
    one = _parse(BASE.replace("hidden_size = 4", "hidden_size = 2048") + "\n[analysis]\nmemory_budget_mb = 1\n")
    with pytest.raises(ConfigError, match=r"^\[analysis\]\.memory_budget_mb: training one variant of .* needs about "
                                          r"[0-9.]+ MiB, more than the memory budget of 1\.0 MiB"):
        CollapseSpecs(one).work_chunk_size()
    small = _parse(BASE + "\n[analysis]\nchunk_size = 5\n")
    assert CollapseSpecs(small).work_chunk_size() == 5
    data = BASE.replace("n = 40", "n = 1000000").replace("seq_len = [3, 6]", "seq_len = [3, 1000]")
    with pytest.raises(ConfigError, match=r"^\[data\]: 1,000,000 sequences of 1,000 steps x 1 feature take 3\.7 GiB "
                                          r"\(float32\), more than the memory budget of 2\.0 GiB"):
        _parse(data)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("[train]", '[train]\noptimizer = ["adam", "sgd", "adam"]', r"\[train\]\.optimizer repeats a value"),
    ("n = 40", "n = [40, 40]", r"\[data\]\.n repeats a value: \[40, 40\]"),
    ("seed = [0]", "seed = [0]\nlearning_rate = [0.01, 0.01]", r"\[grid\]\.learning_rate repeats a value"),
    ("seed = [0]", 'seed = [0]\n[analysis]\nmap = ["seq_len", "seq_len"]', r"\[analysis\]\.map repeats a value"),
])
def test_repeated_values_are_refused(old, new, message):
    assert old in BASE
    with pytest.raises(ConfigError, match=message):
        _parse(BASE.replace(old, new))
