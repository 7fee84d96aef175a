"""The gallery's figures that no other command draws: a model's layer profiles, a monitor over training, and the
convergence of finite-time Lyapunov exponents.

    python scripts/gallery.py [--out results/gallery]

- ``model_profile``: a two-layer LSTM with a sigmoid head, trained on the recall task (T = 30) for 600
  Adam steps; every layer's lag profile and the input sensitivity (``gradflow profile`` draws the same).
- ``monitor/``: the same training watched by ``gf.ProfileMonitor`` every 25 steps; ``gradflow plot`` of
  that store (the profile's evolution per layer, the horizon, the first lag below 10^-1.5, against step).
- ``finite_time_exponents``: the trained first layer's 4 leading exponents over 40 windows of 25 steps, driven
  by 1000 steps of standard normal input.

Deterministic (fixed seeds); about a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import gradflow as gf

matplotlib.use("Agg")

from gradflow.lstm.model import head_logits
from gradflow.plot.lyapunov import save_finite_time_exponents
from gradflow.plot.model import write_model_profile_figures
from gradflow.plot.monitor import plot_monitor

ROOT = Path(__file__).resolve().parents[1]
T, D, H, STEPS, EVERY, BATCH = 30, 1, 32, 600, 25, 32


def trained_model(monitor_dir: Path) -> tuple[gf.Model, np.ndarray]:
    """A two-layer LSTM trained on the recall task with a monitor recording every ``EVERY`` steps."""
    task = gf.recall_task(1024, seq_len=T, features=D, seed=0)
    x, y = np.asarray(task.X, np.float32), np.asarray(task.y, np.float32).reshape(-1)
    keys = jax.random.split(jax.random.key(0), 3)
    model = gf.Model((gf.Layer(gf.init_lstm(keys[0], D, H)), gf.Layer(gf.init_lstm(keys[1], H, H))),
                     gf.Head(0.1 * jax.random.normal(keys[2], (H, 1)), jnp.zeros(1), "sigmoid"))
    optimizer = optax.adam(3e-3)

    def loss(m, xb, yb):
        logits = jax.vmap(lambda s: head_logits(m, s))(xb)[:, 0]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, yb))

    @jax.jit
    def train_step(m, state, xb, yb):
        grads = jax.grad(loss)(m, xb, yb)
        updates, state = optimizer.update(grads, state, m)
        return optax.apply_updates(m, updates), state

    monitor = gf.ProfileMonitor(monitor_dir, x[:16], every=EVERY, task_lag=T - 1, decades=1.5, overwrite=True)
    state = optimizer.init(model)
    for step in range(STEPS + 1):
        monitor.maybe_record(step, model)
        i = (step * BATCH) % (len(x) - BATCH)
        model, state = train_step(model, state, jnp.asarray(x[i:i + BATCH]), jnp.asarray(y[i:i + BATCH]))
    return model, x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "gallery"), help="output directory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, x = trained_model(out / "monitor")
    written = plot_monitor(out / "monitor", out / "monitor" / "figures")
    written += write_model_profile_figures(gf.model_profiles(model, jnp.asarray(x[:16])), out / "model_profile")
    first = model.layers[0].params
    drive = jax.random.normal(jax.random.key(1), (1000, D))  # a long input sequence: noise, as in the task
    windows = gf.lstm_finite_time_exponents(first, drive, k=4, window=25)
    written += save_finite_time_exponents(np.asarray(windows), 25, out / "finite_time_exponents")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
