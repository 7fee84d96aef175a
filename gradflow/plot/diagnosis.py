"""The figures of a diagnosis report: the lag profile, gate histograms, predictions, loss curves per remedy.

Drawn from a :class:`gradflow.diagnose.checks.Diagnosis` (its measured arrays), never recomputed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gradflow.diagnose.checks import Diagnosis
from gradflow.plot.style import CMAP, STYLE, save_figure


def plot_diagnosis(d: Diagnosis, directory: str | Path) -> list[Path]:
    """Every figure of the report of ``d`` into ``directory`` (the remedies' loss curves when it has them)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = plot_lag_profile(d, directory / "lag_profile") + plot_gates(d, directory / "gate_saturation")
    figures += plot_predictions(d, directory / "predictions")
    if d.remedy_outcomes:
        figures += plot_remedy_curves(d.remedy_outcomes, directory / "loss_curves")
    return figures


def plot_lag_profile(d: Diagnosis, path: Path) -> list[Path]:
    """Every layer's lag profile (one layer: the profile alone) with the vanishing threshold."""
    profiles = d.evidence.layer_profiles or {"": d.evidence.lag_profile}
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 2.8), constrained_layout=True)
        for i, (label, profile) in enumerate(profiles.items()):
            ax.plot(np.arange(1, profile.size + 1), profile, color=plt.get_cmap(CMAP)(0.15 + 0.7 * i / len(profiles)),
                    label=f"layer {label}" if len(profiles) > 1 else None)
        ax.axhline(-d.thresholds["vanishing_decades"], color="0.5", ls="--", lw=0.8, label="vanishing threshold")
        ax.set_xlabel("lag $T - t$ (steps)")
        ax.set_ylabel(r"$\log_{10}\,\|\partial h_T/\partial h_t\|_F$")
        ax.legend(frameon=False)
        ax.grid(alpha=0.3, lw=0.5)
        return save_figure(fig, path)


def plot_gates(d: Diagnosis, path: Path) -> list[Path]:
    """Histograms of every layer's gate values: one row per layer, one panel per gate."""
    layers = d.evidence.gates
    columns = max(len(s.values) for s in layers.values())
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(layers), columns, figsize=(2.0 * columns, 2.2 * len(layers)),
                                 constrained_layout=True, sharey=True, squeeze=False)
        for row, (label, stats) in zip(axes, layers.items()):
            for ax, (gate, values) in zip(row, stats.values.items()):
                ax.hist(values.ravel(), bins=40, color=plt.get_cmap(CMAP)(0.3))
                name = "candidate g" if gate == "cell" else gate if gate == "candidate" else f"{gate} gate"
                ax.set_title(f"layer {label}: {name}" if len(layers) > 1 else name)
                ax.set_yscale("log")
            for ax in row[len(stats.values):]:
                ax.set_visible(False)
            row[0].set_ylabel("count (steps x units x inputs)")
        return save_figure(fig, path)


def plot_predictions(d: Diagnosis, path: Path) -> list[Path]:
    pred = np.asarray(d.evidence.predictions).reshape(len(d.evidence.predictions), -1)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 2.8), constrained_layout=True)
        ax.hist(pred[:, 0] if pred.shape[1] == 1 else pred.max(1), bins=40, color=plt.get_cmap(CMAP)(0.6))
        ax.set_xlabel("prediction" if pred.shape[1] == 1 else "largest class probability")
        ax.set_ylabel("inputs")
        return save_figure(fig, path)


def plot_remedy_curves(outcomes: dict, path: Path) -> list[Path]:
    """Training loss against step for the setup as given (black) and each remedy, mean over seeds."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.0, 3.2), constrained_layout=True)
        cmap = plt.get_cmap(CMAP)
        for i, (name, o) in enumerate(outcomes.items()):
            curve = np.nanmean(o.train_loss, axis=0)
            window = max(1, curve.size // 50)
            smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(smooth.size) + window, smooth, color="k" if name == "as given" else cmap(i / len(outcomes)),
                    lw=1.6 if name == "as given" else 0.9, label=name)
        ax.set_xlabel("training step")
        ax.set_ylabel("minibatch loss (mean over seeds)")
        ax.legend(frameon=False, fontsize=6, ncol=2)
        ax.grid(alpha=0.3, lw=0.5)
        return save_figure(fig, path)
