"""Training monitors: the store holds the profiles of the weights at every recorded step (against model_profiles of
a snapshot and a float64 jacrev reference), records every N steps, resumes, refuses another run, reports its scalars
to Keras logs / CSVLogger and a torch writer, and its figures draw."""

import contextlib
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray
from reference import jacrev_lag_norms

from conftest import LOG10_ATOL
from gradflow.flow.networks import model_profiles
from gradflow.lstm.gru import GRUParams
from gradflow.lstm.init import init_lstm
from gradflow.lstm.model import Bidirectional, Layer, Model
from gradflow.monitor.core import ProfileMonitor
from gradflow.monitor.store import open_monitor
from gradflow.sweep.layout import OutputLayout
from gradflow.sweep.store import StoreMismatchError

ROOT = Path(__file__).resolve().parents[1]
T, D, H = 7, 3, 4


def _gru(key, D, H) -> GRUParams:
    k = jax.random.split(key, 4)
    return GRUParams(*(0.6 * jax.random.normal(k[i], s, jnp.float32)
                       for i, s in enumerate([(D, 3 * H), (H, 3 * H), (3 * H,), (3 * H,)])))


def _stack(seed: int = 0) -> Model:
    """An LSTM under a GRU layer, float32 weights."""
    k0, k1 = jax.random.split(jax.random.key(seed))
    lstm = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), init_lstm(k0, D, H))
    return Model((Layer(lstm), Layer(_gru(k1, H, H), cell="gru")))


def _trained(model: Model, step: int) -> Model:
    """Deterministic stand-in for a training step: every weight moved by a step-dependent amount."""
    return jax.tree.map(lambda a: a * (1 + 0.05 * np.sin(step + a.size)).astype(np.float32) + np.float32(0.01), model)


def _probe(rng, n=3):
    return rng.normal(size=(n, T, D))


def _horizon_ref(profile: np.ndarray, decades: float) -> float:
    below = np.flatnonzero(profile < -decades)
    return float(below[0] + 1) if below.size else np.inf


def _decay_ref(profile: np.ndarray) -> float:
    return float(np.polyfit(np.arange(1, profile.size + 1), profile.astype(np.float64), 1)[0])


def test_stored_profiles_are_those_of_the_weights_at_each_recorded_step(tmp_path, rng):
    probe = _probe(rng)
    monitor = ProfileMonitor(tmp_path, probe, every=3, task_lag=2, decades=1.0)
    model, snapshots, returned = _stack(), {}, {}
    for step in range(10):
        model = _trained(model, step)
        scalars = monitor.maybe_record(step, model)
        assert (scalars is None) == (step % 3 != 0)
        if scalars is not None:
            snapshots[step], returned[step] = jax.tree.map(np.array, model), scalars
    ds = open_monitor(tmp_path).load()
    assert ds["step"].values.tolist() == [0, 3, 6, 9] == list(snapshots)
    assert ds.attrs["kind"] == "monitor" and ds.attrs["every"] == 3 and ds.attrs["probe_shape"] == [3, T, D]
    assert ds["log10_norm_h"].dims == ("step", "layer", "lag") and ds["lag"].values.tolist() == list(range(1, T + 1))
    assert ds["layer_cell"].values.tolist() == ["lstm", "gru"] and ds["layer_hidden_size"].values.tolist() == [H, H]
    for i, (step, weights) in enumerate(snapshots.items()):
        expected = model_profiles(weights, probe.astype(np.float32))
        for layer, p in enumerate(expected.layers):
            stored = ds["log10_norm_h"].values[i, layer]
            np.testing.assert_allclose(stored, p.log10_norm_h, rtol=0, atol=1e-6)
            assert ds["horizon"].values[i, layer] == _horizon_ref(p.log10_norm_h, 1.0)
            np.testing.assert_allclose(ds["decay_rate"].values[i, layer], _decay_ref(p.log10_norm_h), atol=1e-5)
            assert returned[step][f"gradflow/log10_norm_at_lag/{layer}"] == pytest.approx(float(stored[1]), abs=0)
            assert returned[step][f"gradflow/horizon/{layer}"] == ds["horizon"].values[i, layer]
        np.testing.assert_allclose(ds["input_sensitivity"].values[i], expected.input_sensitivity, atol=1e-6)
        # and the bottom LSTM layer against a float64 jacrev reference, mean over the probe sequences
        lstm = jax.tree.map(lambda a: np.asarray(a, np.float64), weights.layers[0].params)
        reference = np.mean([jacrev_lag_norms(lstm, x) for x in probe.astype(np.float32).astype(np.float64)], axis=0)
        np.testing.assert_allclose(ds["log10_norm_h"].values[i, 0], reference, atol=LOG10_ATOL[np.dtype("float32")])


def test_a_bidirectional_model_has_labelled_layers_and_no_input_sensitivity(tmp_path, rng):
    k = jax.random.split(jax.random.key(3), 2)
    params = [jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), init_lstm(key, D, H)) for key in k]
    model = Model((Bidirectional(Layer(params[0]), Layer(params[1], direction="backward")),))
    scalars = ProfileMonitor(tmp_path, _probe(rng), every=1).record(0, model)
    assert set(scalars) == {"gradflow/horizon/0", "gradflow/horizon/0_backward", "gradflow/decay_rate/0",
                            "gradflow/decay_rate/0_backward"}
    assert scalars["gradflow/horizon/0"] == np.inf  # an initialised LSTM stays above 1e-10 over 7 lags
    ds = open_monitor(tmp_path)
    assert ds["layer_direction"].values.tolist() == ["forward", "backward"]
    assert np.isnan(ds["input_sensitivity"].values).all()


def test_reopening_resumes_appending_and_a_stored_step_is_not_recomputed(tmp_path, rng):
    probe, model = _probe(rng), _stack()
    first = ProfileMonitor(tmp_path, probe, every=2)
    for step in (0, 2):
        first.record(step, _trained(model, step))
    again = ProfileMonitor(tmp_path, probe, every=2)
    stored = again.record(2, _trained(model, 99))  # resumed from an earlier checkpoint: the stored record stands
    assert stored == first.latest
    again.record(4, _trained(model, 4))
    ds = open_monitor(tmp_path)
    assert ds["step"].values.tolist() == [0, 2, 4]
    np.testing.assert_allclose(ds["log10_norm_h"].values[2, 0],
                               model_profiles(_trained(model, 4), probe.astype(np.float32)).layers[0].log10_norm_h,
                               atol=1e-6)
    with pytest.raises(ValueError, match="step 3 is not after the last recorded step 4"):
        again.record(3, model)
    assert again.store.read(4).step == 4


def test_a_record_cut_short_is_trimmed_when_the_store_is_reopened(tmp_path, rng):
    probe, model = _probe(rng), _stack()
    monitor = ProfileMonitor(tmp_path, probe)
    monitor.record(0, model)
    import zarr

    group = zarr.open_group(OutputLayout(tmp_path).store, mode="r+", zarr_format=2, use_consolidated=False)
    group["horizon"].resize((2, 2))  # killed after growing one array, before the step and the metadata
    group["horizon"][1] = np.full(2, 7.0, np.float32)
    resumed = ProfileMonitor(tmp_path, probe)
    assert resumed.record(0, model) == monitor.latest  # the store is opened (step 0 is stored, not recomputed)
    assert zarr.open_array(OutputLayout(tmp_path).store / "horizon", mode="r", zarr_format=2).shape == (1, 2)
    resumed.record(100, model)
    assert np.isinf(open_monitor(tmp_path)["horizon"].values[1]).all()  # record 100 replaced the stray chunk
    ds = open_monitor(tmp_path).load()
    assert ds["step"].values.tolist() == [0, 100] and ds["horizon"].shape == (2, 2)
    assert json.loads(OutputLayout(tmp_path).metadata.read_text())["metadata"]["horizon/.zarray"]["shape"] == [2, 2]


@pytest.mark.parametrize("named, change", [
    ("probe_shape", lambda probe: {"probe_xs": np.zeros((3, T + 1, D))}),
    ("probe_sha256", lambda probe: {"probe_xs": probe + 1.0}),
    ("every", lambda probe: {"every": 7}),
    ("task_lag", lambda probe: {"task_lag": 2}),
    ("wrt", lambda probe: {"wrt": "state"}),
    ("layers", lambda probe: {"model": Model((Layer(init_lstm(jax.random.key(0), D, H + 1)),))}),
])
def test_reopening_with_another_model_probe_or_setting_is_refused_naming_it(tmp_path, rng, named, change):
    probe = _probe(rng)
    ProfileMonitor(tmp_path, probe, every=5).record(0, _stack())
    settings = {"probe_xs": probe, "every": 5, "model": _stack(), **change(probe)}
    model = settings.pop("model")
    with pytest.raises(StoreMismatchError, match=rf"another run: {named} \(stored"):
        ProfileMonitor(tmp_path, **settings).record(10, model)
    ProfileMonitor(tmp_path, **settings, overwrite=True).record(10, model)
    assert open_monitor(tmp_path)["step"].values.tolist() == [10]


def test_a_store_of_another_kind_is_refused(tmp_path, rng):
    from gradflow.sweep.results import Results

    Results(("x",), {"x": np.arange(2), "lag": np.arange(1, 3)}, {"v": np.zeros(2)}, {"kind": "sweep"}).save(tmp_path)
    with pytest.raises(StoreMismatchError, match="not a monitor"):
        ProfileMonitor(tmp_path, _probe(rng)).record(0, _stack())


@pytest.mark.parametrize("kwargs, error, match", [
    ({"probe_xs": np.full((2, T, D), np.nan)}, ValueError, "probe_xs holds non-finite"),
    ({"probe_xs": np.zeros((2, 0, D))}, ValueError, r"probe_xs must have shape \(N, T, D\)"),
    ({"probe_xs": np.zeros((2, T, D), bool)}, TypeError, "probe_xs must hold real numbers"),
    ({"every": 0}, ValueError, "every must be a positive integer"),
    ({"task_lag": T + 1}, ValueError, r"task_lag must be an integer lag in 1..T = 1..7"),
    ({"wrt": "c"}, ValueError, "wrt='c' is not known"),
    ({"decades": -1.0}, ValueError, "decades must be a positive finite number"),
])
def test_bad_settings_are_refused_naming_them(tmp_path, kwargs, error, match):
    settings = {"probe_xs": np.zeros((2, T, D)), **kwargs}
    with pytest.raises(error, match=match):
        ProfileMonitor(tmp_path, **settings)


def test_a_model_of_another_input_size_or_a_bad_step_is_refused(tmp_path, rng):
    monitor = ProfileMonitor(tmp_path, rng.normal(size=(2, T, D + 1)))
    with pytest.raises(ValueError, match=r"the model reads 3 input features; probe_xs has D = 4"):
        monitor.record(0, _stack())
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        monitor.record(-1, _stack())
    assert not OutputLayout(tmp_path).store.exists()


def test_an_nnx_rnn_is_monitored_through_model_from_flax(tmp_path, rng):
    from flax import nnx

    from gradflow.data.flax_modules import model_from_flax

    rnn = nnx.RNN(nnx.LSTMCell(D, H, rngs=nnx.Rngs(0)))
    probe = _probe(rng)
    ProfileMonitor(tmp_path, probe).maybe_record(0, rnn)
    expected = model_profiles(model_from_flax(rnn), probe.astype(np.float32)).layers[0].log10_norm_h
    np.testing.assert_allclose(open_monitor(tmp_path)["log10_norm_h"].values[0, 0], expected, atol=1e-6)


def test_importing_the_monitors_imports_no_framework():
    code = ("import sys, gradflow.monitor.core, gradflow.monitor.torch, gradflow.monitor.keras; "
            "print([m for m in ('torch', 'keras', 'tensorflow', 'matplotlib') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_the_keras_callback_without_keras_names_the_extra():
    code = ("import sys; sys.modules['keras'] = None\n"
            "try:\n    from gradflow.monitor.keras import GradflowCallback\nexcept ValueError as error:\n"
            "    print(error)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert 'pip install "gradflow[keras]"' in done.stdout


class FakeWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, global_step):
        self.scalars.append((tag, value, global_step))


def test_the_torch_monitor_records_every_n_steps_and_writes_its_scalars(tmp_path, rng):
    torch = pytest.importorskip("torch")
    from gradflow.data.torch_files import model_from_torch_module
    from gradflow.monitor.torch import TorchMonitor

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(D, H, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(H, 1)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    x = torch.from_numpy(rng.normal(size=(8, T, D)).astype(np.float32))
    writer = FakeWriter()
    monitor = TorchMonitor(tmp_path, x[:3].transpose(0, 1), every=4, writer=writer, task_lag=T, batch_first=False)
    for step in range(9):
        loss = (net(x) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        returned = monitor.step(net, step)
        assert (returned is None) == (step % 4 != 0)
    ds = open_monitor(tmp_path).load()
    assert ds["step"].values.tolist() == [0, 4, 8] and ds.attrs["framework"] == "torch"
    final = model_profiles(model_from_torch_module(net), x[:3].numpy())
    for layer in range(2):
        np.testing.assert_allclose(ds["log10_norm_h"].values[-1, layer], final.layers[layer].log10_norm_h, atol=1e-6)
    assert {step for _, _, step in writer.scalars} == {0, 4, 8}
    last = {tag: value for tag, value, step in writer.scalars if step == 8}
    assert last == returned and len(last) == 6
    assert last["gradflow/log10_norm_at_lag/1"] == pytest.approx(float(ds["log10_norm_h"].values[-1, 1, -1]), abs=0)
    with pytest.raises(TypeError, match="writer must have an add_scalar"):
        TorchMonitor(tmp_path, x, writer=object())


def _keras():
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    from gradflow.data.keras_files import import_keras  # the jax backend when the configured one is missing

    return import_keras()


@contextlib.contextmanager
def keras_friendly_jax():
    """Keras's jax backend relies on JAX's standard dtype and rank promotion (the suite makes both strict)."""
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


def _keras_classifier(keras):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T, D)), keras.layers.LSTM(H), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    return model


def test_the_keras_callback_puts_its_scalars_in_logs_and_csvlogger_writes_them(tmp_path, rng):
    keras = _keras()
    from gradflow.data.keras_files import model_from_keras
    from gradflow.monitor.keras import GradflowCallback

    x = rng.normal(size=(32, T, D)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.float32)
    with keras_friendly_jax():
        model = _keras_classifier(keras)
        callback = GradflowCallback(tmp_path / "monitor", x[:4], task_lag=3)
        history = model.fit(x, y, epochs=3, batch_size=8, verbose=0,
                            callbacks=[callback, keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
        final = model_profiles(model_from_keras(model), x[:4])
    ds = open_monitor(tmp_path / "monitor").load()
    assert ds["step"].values.tolist() == [0, 1, 2, 3] and ds.attrs["every_unit"] == "epoch"
    np.testing.assert_allclose(ds["log10_norm_h"].values[-1, 0], final.layers[0].log10_norm_h, atol=1e-6)
    names = ["gradflow/horizon/0", "gradflow/decay_rate/0", "gradflow/log10_norm_at_lag/0"]
    rows = list(csv.DictReader((tmp_path / "log.csv").read_text().splitlines()))
    assert len(rows) == 3
    for epoch, row in enumerate(rows):
        assert float(row["gradflow/decay_rate/0"]) == pytest.approx(float(ds["decay_rate"].values[epoch + 1, 0]))
        assert float(row["gradflow/log10_norm_at_lag/0"]) == pytest.approx(
            float(ds["log10_norm_h"].values[epoch + 1, 0, 2]))
        assert row["gradflow/horizon/0"] == "inf"
    assert all(len(history.history[name]) == 3 for name in names)
    assert getattr(callback.on_train_batch_end, "_is_default", False)  # by epoch, Keras keeps batches asynchronous


def test_the_keras_callback_records_every_n_batches_across_fit_calls(tmp_path, rng):
    keras = _keras()
    from gradflow.monitor.keras import GradflowCallback

    x = rng.normal(size=(32, T, D)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.float32)
    with keras_friendly_jax():
        model = _keras_classifier(keras)
        callback = GradflowCallback(tmp_path, x[:2], every_batches=3)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callback])  # 8 batches
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[callback])  # batches 9..12
    assert open_monitor(tmp_path)["step"].values.tolist() == [0, 3, 6, 9, 12]


def test_the_plot_draws_the_evolution_and_the_horizon_from_a_store(tmp_path, rng):
    pytest.importorskip("matplotlib")
    from gradflow.plot.monitor import plot_monitor

    monitor = ProfileMonitor(tmp_path / "run", _probe(rng), every=1, decades=0.5)
    model = _stack()
    for step in range(4):
        model = _trained(model, step)
        monitor.record(10 * step, model)
    paths = plot_monitor(tmp_path / "run", tmp_path / "figures")
    assert sorted(p.name for p in paths) == ["monitor_horizon.pdf", "monitor_horizon.png", "monitor_profiles.pdf",
                                             "monitor_profiles.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(FileNotFoundError, match="holds no gradflow results"):
        plot_monitor(tmp_path / "nothing", tmp_path / "figures")
    from gradflow.cli import main  # the command picks the monitor's figures by the store's kind

    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "cli")]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in paths)


def test_info_describes_a_monitor_store_and_check_says_what_it_checks(tmp_path, rng, capsys):
    from gradflow.cli import main

    monitor = ProfileMonitor(tmp_path / "run", _probe(rng), every=5)
    for step in (0, 5, 10):
        monitor.record(step, _stack())
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "3 at steps 0..10 (every 5 steps)" in out and "0 forward LSTM H=4; 1 forward GRU H=4" in out
    assert main(["check", str(tmp_path / "run")]) == 2
    assert "a training monitor's store" in capsys.readouterr().err


def test_the_store_opens_with_xarray_alone(tmp_path, rng):
    ProfileMonitor(tmp_path, _probe(rng), every=1).record(0, _stack())
    ds = xarray.open_zarr(OutputLayout(tmp_path).store, consolidated=True)
    assert set(ds.data_vars) == {"log10_norm_h", "input_sensitivity", "horizon", "decay_rate"}
    assert {"layer_index", "layer_direction", "layer_cell", "layer_hidden_size"} <= set(ds.coords)
    assert ds["log10_norm_h"].attrs["units"] == "log10"


@pytest.mark.slow
def test_bench_monitor_quick_runs_and_records_every_framework(tmp_path):
    env = {**os.environ, "JAX_ENABLE_X64": "0"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_monitor.py"), "--quick", "--out", str(tmp_path)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "bench_monitor.md").read_text().startswith("# bench_monitor")
    record = json.loads((tmp_path / "bench_monitor.json").read_text())
    assert [c["framework"] for c in record["cases"]] == ["jax", "torch", "keras"]
    for case in record["cases"]:
        assert case["step_s_without"] > 0 and case["step_s_with"] > 0 and case["one_record_s"] > 0
    assert record["metadata"]["versions"]["jax"]
