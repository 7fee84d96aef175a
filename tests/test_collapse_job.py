"""The collapse sweep: the store holds what direct training computes, verdicts follow the stored
metrics, reruns resume, and the command line draws the map and its table."""

import json
import os

import jax
import numpy as np
import pytest
import xarray

from gradflow.cli import main
from gradflow.collapse.job import CollapseSpecs
from gradflow.collapse.metrics import collapse_metrics
from gradflow.config import ConfigError, load_config, parse_config
from gradflow.sweep.layout import STORE_NAME
from gradflow.training.train import settings_arrays, train_data, train_variants
from gradflow.workflows import collapse_map
from test_collapse_config import BASE

#: Every test here trains a collapse map (one shared fixture): part of the full suite, not the fast loop.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    out = tmp_path_factory.mktemp("collapse")
    result = collapse_map(parse_config(BASE, command="collapse"), out, show_progress=False)
    return out, result


def test_the_store_is_labelled_by_the_swept_settings(mapped):
    out, result = mapped
    ds = xarray.open_zarr(out / STORE_NAME)
    assert ds.attrs["kind"] == "collapse" and ds.attrs["title"] == "gradflow collapse map"
    assert dict(ds.sizes) == {"seq_len": 2, "forget_bias": 2, "seed": 1, "lag": 6, "checkpoint": 3, "t": 7, "step": 20}
    assert ds["collapsed"].dims == ("seq_len", "forget_bias", "seed") and ds["collapsed"].dtype == bool
    assert ds["log10_grad_norm"].dims == ("seq_len", "forget_bias", "seed", "checkpoint", "t")
    assert ds.checkpoint.values.tolist() == [0, 10, 20] and ds.step.values.tolist() == list(range(1, 21))
    # the shorter sequence's profile and gradient norms are NaN past its own length
    assert np.isnan(ds["initial_log10_norm"].values[0, ..., 3:]).all()
    assert np.isfinite(ds["initial_log10_norm"].values[1]).all()
    assert result.table["map_axes"] == ["seq_len", "forget_bias"]
    assert sorted(p.name for p in result.files) == sorted(
        ["collapse_map.pdf", "collapse_map.png", "loss_curves.pdf", "loss_curves.png", "collapse_table.md",
         "collapse_table.json"])


def test_stored_training_equals_direct_training(mapped):
    out, result = mapped
    config = parse_config(BASE, command="collapse")
    job = CollapseSpecs(config)
    for spec, T in enumerate((3, 6)):
        train, val = job.task(spec)
        assert train.seq_len == T
        values = config.variants().values()
        with jax.numpy_dtype_promotion("standard"):
            direct = jax.tree.map(np.asarray, train_variants(job.train_spec(spec), settings_arrays(values),
                                                              train_data(train, val)))
        stored = result.results.data
        for name in ("train_loss", "val_loss", "val_spread", "saturation_forget"):
            np.testing.assert_allclose(stored[name][spec].reshape(direct[name].shape), direct[name], rtol=2e-5,
                                       atol=1e-7, err_msg=name)
        np.testing.assert_allclose(stored["initial_log10_norm"][spec, :, :, :T].reshape(2, T),
                                   direct["initial_log10_norm"], rtol=1e-5)
        # the verdicts are those of the stored metrics, and the lag value is read at lag T - 1
        m = collapse_metrics("binary", val.y, direct["val_loss"][:, -1], direct["val_accuracy"][:, -1],
                             direct["val_spread"][:, -1])
        np.testing.assert_array_equal(stored["collapsed"][spec].ravel(), m["collapsed"])
        np.testing.assert_array_equal(stored["learned"][spec].ravel(), m["learned"])
        np.testing.assert_allclose(stored["initial_log10_norm_at_lag"][spec].ravel(),
                                   direct["initial_log10_norm"][:, T - 2], rtol=1e-5)


def test_a_rerun_resumes_with_nothing_to_train(mapped):
    out, _ = mapped
    again = collapse_map(parse_config(BASE, command="collapse"), out, show_progress=False)
    last = json.loads((out / "runs.jsonl").read_text().splitlines()[-1])
    assert last["computed"] == 0 and last["skipped"] == 2
    np.testing.assert_array_equal(again.results.data["val_loss"], mapped[1].results.data["val_loss"])


def test_the_command_line_trains_plots_and_summarises(tmp_path, mapped, capsys):
    config = tmp_path / "c.toml"
    config.write_text(BASE)
    out = tmp_path / "out"
    assert main(["collapse", str(config), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "collapsed:" in printed and "of 4 variants predict (nearly) the same value" in printed
    table = (out / "figures" / "collapse_table.md").read_text()
    assert table.startswith("# Collapse map") and "Onset of collapse along forget_bias" in table
    assert main(["plot", str(out), "--out", str(tmp_path / "again")]) == 0
    for name in ("collapse_map.png", "loss_curves.pdf", "collapse_table.md"):
        assert (tmp_path / "again" / name).read_bytes() == (out / "figures" / name).read_bytes()
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "collapsed                 true for" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["config.toml", "figures", "results.zarr", "runs.jsonl"]


def test_epochs_give_the_steps_that_the_store_records(tmp_path):
    by_epochs = CollapseSpecs(parse_config(BASE.replace("steps = 20", "epochs = 4"), command="collapse"))
    # n = 40 with 8 held out: 32 training sequences, 4 batches of 8 per epoch
    assert by_epochs.schedule == (16, 2) and by_epochs.train_spec(0).steps == 16
    by_steps = CollapseSpecs(parse_config(BASE.replace("steps = 20", "steps = 16"), command="collapse"))
    assert by_epochs.resolved() == by_steps.resolved()  # the same training: the same store
    assert by_epochs.resolved()["train"] == {"optimizer": ["adam"], "steps": 16, "batch_size": 8, "checkpoints": 2,
                                             "grad_probe": 4}
    two_sizes = CollapseSpecs(parse_config(BASE.replace("steps = 20", "epochs = 4").replace("n = 40", "n = [40, 80]"),
                                           command="collapse"))
    with pytest.raises(ConfigError, match=r"\[train\]\.epochs gives other \(steps, checkpoints\) for other \[data\]\.n"):
        two_sizes.resolved()


def test_an_npz_task_resolves_to_the_files_sizes(tmp_path):
    np.savez(tmp_path / "data.npz", X=np.zeros((20, 5, 3)), y=np.arange(20) % 2)
    (tmp_path / "c.toml").write_text(BASE.replace('task = "recall"\nn = 40\nseq_len = [3, 6]', 'task = "npz"\npath = "data.npz"'))
    job = CollapseSpecs(load_config(tmp_path / "c.toml", command="collapse"))
    resolved = job.resolved()
    assert resolved["model"]["input_size"] == 3 and (resolved["data"]["n"], resolved["data"]["seq_len"]) == ([20], [5])
    assert job.shape_axes["n"] == (20,) and job.train_spec(0).input_size == 3
