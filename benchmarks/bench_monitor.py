r"""Overhead of the training monitors (:mod:`gradflow.monitor`) at their default interval, per framework.

What is measured
----------------
Three small example models trained on a seed-setting-like task (inputs (B, T, D) Gaussian, target the sign of
the first input's first feature), each in its framework's own loop, with and without its monitor:

- ``keras``: ``Sequential([LSTM(H), Dense(1, sigmoid)])``, Adam, ``fit`` with ``batch_size=B`` (the jax
  backend), :class:`GradflowCallback` at its default ``every_epochs=1``;
- ``torch``: ``nn.LSTM(D, H, batch_first=True)`` and a linear head, Adam, the user's loop calling
  :meth:`TorchMonitor.step` every step (records every :data:`DEFAULT_EVERY` steps);
- ``jax``: a gradflow :class:`Model` (one LSTM layer and a sigmoid head) trained with optax Adam in a jitted step,
  the loop calling :meth:`ProfileMonitor.maybe_record` every step (records every :data:`DEFAULT_EVERY` steps).

The probe batch is N sequences of the same shape (T, D). Every loop runs ``steps`` = :data:`DEFAULT_EVERY`
training steps (Keras: whole epochs of 256 batches, the monitor recording once per epoch), once as a warm-up (compiles the training
step and, with the monitor, the profile program; reported as ``first_run_s``), then ``--repeats`` times; the
median is reported; the runs with and without the monitor alternate, so that a change in the machine's load
falls on both, and the overhead is the median of the pairs' ratios. Steps continue across repeats, so the monitor appends to one store as in a real run. The
overhead is ``(with - without) / without`` of the time per training step, amortised over the interval; a
single record's own time (conversion, profiles, store append) is measured beside it.

Writes ``bench_monitor.json`` and ``bench_monitor.md`` to ``--out`` (default ``results/bench``). ``--quick``:
tiny sizes, for the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, run_metadata, write_results

from gradflow.lstm.init import init_lstm
from gradflow.lstm.model import Head, Layer, Model, head_logits
from gradflow.monitor.core import DEFAULT_EVERY, ProfileMonitor

#: The target of the whole run: the monitor's share of a training step at the default interval.
TARGET_FRACTION = 0.10


def task(n: int, T: int, D: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, T, D)).astype(np.float32)
    return x, (x[:, 0, 0] > 0).astype(np.float32)


def paired_runs(without, with_, repeats: int) -> tuple[dict, dict, float]:
    """Each loop once as a warm-up, then ``repeats`` pairs (without, with) alternated, so that a change in the
    machine's load falls on both; returns both timings and the median of the pairs' overhead ratios."""

    def timed(run, k):
        start = time.perf_counter()
        run(k)
        return time.perf_counter() - start

    first = (timed(without, 0), timed(with_, 0))
    pairs = [(timed(without, k), timed(with_, k)) for k in range(1, repeats + 1)]

    def summary(times, first_s):
        return {"first_run_s": first_s, "median_s": statistics.median(times), "best_s": min(times),
                "repeats_s": list(times)}

    ratios = [w / wo - 1 for wo, w in pairs]
    return (summary([p[0] for p in pairs], first[0]), summary([p[1] for p in pairs], first[1]),
            statistics.median(ratios))


def record_time(monitor: ProfileMonitor, model, first_step: int, repeats: int) -> float:
    """Median seconds of one record (conversion done by the caller's ``model()``), at fresh steps."""
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        monitor.record(first_step + k * monitor.every, model())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_jax(size: dict, repeats: int, out: Path) -> dict:
    import optax

    T, D, H, B, steps = size["T"], size["D"], size["H"], size["B"], size["steps"]
    x, y = task(B * 8, T, D)
    model = Model((Layer(init_lstm(jax.random.key(0), D, H)),),
                  Head(jnp.zeros((H, 1), jnp.float32), jnp.zeros(1, jnp.float32), "sigmoid"))
    optimizer = optax.adam(1e-3)

    def loss(m, xb, yb):
        logits = jax.vmap(lambda s: head_logits(m, s))(xb)[:, 0]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, yb))

    @jax.jit
    def train_step(m, state, xb, yb):
        grads = jax.grad(loss)(m, xb, yb)
        updates, state = optimizer.update(grads, state, m)
        return optax.apply_updates(m, updates), state

    batches = [(jnp.asarray(x[i * B:(i + 1) * B]), jnp.asarray(y[i * B:(i + 1) * B])) for i in range(8)]
    monitor = ProfileMonitor(out / "jax", x[: size["N"]], overwrite=True)
    state = {"model": model, "opt": optimizer.init(model)}

    def loop(with_monitor: bool):
        def run(k):
            m, s = state["model"], state["opt"]
            for i in range(steps):
                m, s = train_step(m, s, *batches[i % 8])
                if with_monitor:
                    monitor.maybe_record(k * steps + i, m)
            jax.block_until_ready(m)
            state["model"], state["opt"] = m, s
        return run

    without, with_, paired = paired_runs(loop(False), loop(True), repeats)
    one = record_time(monitor, lambda: state["model"], (repeats + 1) * steps, repeats)
    return _case("jax", f"gradflow Model, LSTM H={H}, optax Adam, jitted step", steps, monitor.every, "step",
                 without, with_, paired, one, size)


def bench_torch(size: dict, repeats: int, out: Path) -> dict:
    import torch

    from gradflow.monitor.torch import TorchMonitor

    T, D, H, B, steps = size["T"], size["D"], size["H"], size["B"], size["steps"]
    x, y = task(B * 8, T, D)
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(D, H, batch_first=True)
            self.head = torch.nn.Linear(H, 1)

        def forward(self, xb):
            return self.head(self.lstm(xb)[0][:, -1])[:, 0]

    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    monitor = TorchMonitor(out / "torch", x[: size["N"]], overwrite=True)

    def loop(with_monitor: bool):
        def run(k):
            for i in range(steps):
                j = i % 8
                loss = loss_fn(net(xt[j * B:(j + 1) * B]), yt[j * B:(j + 1) * B])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if with_monitor:
                    monitor.step(net, k * steps + i)
        return run

    without, with_, paired = paired_runs(loop(False), loop(True), repeats)
    from gradflow.data.torch_files import model_from_torch_module

    one = record_time(monitor.monitor, lambda: model_from_torch_module(net), (repeats + 1) * steps, repeats)
    case = _case("torch", f"nn.LSTM H={H} + Linear, Adam, eager loop", steps, monitor.monitor.every, "step",
                 without, with_, paired, one, size)
    case["torch_threads"] = torch.get_num_threads()
    return case


def bench_keras(size: dict, repeats: int, out: Path) -> dict:
    from gradflow.data.keras_files import import_keras, model_from_keras

    keras = import_keras()
    from gradflow.monitor.keras import GradflowCallback

    T, D, H, B = size["T"], size["D"], size["H"], size["B"]
    batches = size["keras_batches"]
    x, y = task(B * batches, T, D)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T, D)), keras.layers.LSTM(H), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    callback = GradflowCallback(out / "keras", x[: size["N"]], overwrite=True)
    epochs = size["keras_epochs"]
    done = {"epochs": 0}

    def loop(with_monitor: bool):
        def run(k):
            start = done["epochs"]
            model.fit(x, y, batch_size=B, epochs=start + epochs, initial_epoch=start, verbose=0, shuffle=False,
                      callbacks=[callback] if with_monitor else [])
            done["epochs"] = start + epochs
        return run

    without, with_, paired = paired_runs(loop(False), loop(True), repeats)
    first = 10**6  # fresh steps, after every epoch of the loops above
    one = record_time(callback.monitor, lambda: model_from_keras(model), first, repeats)
    return _case("keras", f"Sequential LSTM({H}) + Dense(1, sigmoid), Adam, fit (jax backend)", epochs * batches,
                 callback.monitor.every * batches, "epoch", without, with_, paired, one, size)


def _case(framework, model, steps, every_steps, unit, without, with_, paired, record_s, size) -> dict:
    per_step_without = without["median_s"] / steps
    per_step_with = with_["median_s"] / steps
    return {
        "framework": framework,
        "model": model,
        "sizes": size,
        "steps_per_run": steps,
        "default_interval": f"{every_steps} training steps" if unit == "step" else f"1 epoch = {every_steps} steps",
        "every_steps": every_steps,
        "without_monitor": without,
        "with_monitor": with_,
        "step_s_without": per_step_without,
        "step_s_with": per_step_with,
        "overhead_fraction": (per_step_with - per_step_without) / per_step_without,
        "overhead_fraction_paired_median": paired,
        "one_record_s": record_s,
        "one_record_over_interval": record_s / (every_steps * per_step_without),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run for the tests)")
    parser.add_argument("--out", default="results/bench", help="output directory (default results/bench)")
    parser.add_argument("--repeats", type=int, default=None, help="timed pairs of runs (default 9, quick 2)")
    parser.add_argument("--frameworks", default="jax,torch,keras", help="comma-separated subset of jax,torch,keras")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 9)
    if args.quick:
        size = {"T": 8, "D": 2, "H": 4, "B": 8, "N": 2, "steps": DEFAULT_EVERY, "keras_batches": 4,
                "keras_epochs": 2}
    else:
        size = {"T": 50, "D": 4, "H": 32, "B": 32, "N": 16, "steps": DEFAULT_EVERY, "keras_batches": 256,
                "keras_epochs": 2}
    benches = {"jax": bench_jax, "torch": bench_torch, "keras": bench_keras}
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = sorted(set(frameworks) - set(benches))
    if unknown:
        parser.error(f"--frameworks: unknown {unknown}; expected a subset of {sorted(benches)}")
    metadata = run_metadata()
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in frameworks:
            cases.append(benches[name](size, repeats, Path(tmp)))
    metadata["load_average_1min_end"] = os.getloadavg()[0]
    record = {"metadata": metadata, "default_every_steps": DEFAULT_EVERY, "keras_default_every_epochs": 1,
              "target_fraction": TARGET_FRACTION, "repeats": repeats, "quick": args.quick, "cases": cases}
    rows = [[c["framework"], c["model"], c["default_interval"], c["step_s_without"] * 1e3, c["step_s_with"] * 1e3,
             c["one_record_s"] * 1e3, 100 * c["overhead_fraction_paired_median"], 100 * c["one_record_over_interval"]]
            for c in cases]
    table = markdown_table(["framework", "model", "default interval", "step ms (without)", "step ms (with)",
                            "one record ms", "overhead % (measured)", "overhead % (record / interval)"], rows)
    markdown = (f"# bench_monitor\n\nMonitor overhead at the default interval (target under "
                f"{100 * TARGET_FRACTION:.0f}% of a training step). Sizes: {size}; median of {repeats} runs on "
                f"{metadata['platform']} ({metadata['cpu_model']}, {metadata['cpu_count']} CPUs), "
                f"{metadata['date']}.\n\n{table}\n\n"
                "The measured overhead is the median over the repeats of (time with / time without - 1), the two "
                "loops alternated (other processes on the machine make it noisy at a few percent); the last column "
                "is one record's own time over the interval's training time.\n\n"
                f"Regenerate: `python benchmarks/bench_monitor.py{' --quick' if args.quick else ''}`\n")
    json_path, md_path = write_results(args.out, "bench_monitor", record, markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
