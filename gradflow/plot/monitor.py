"""Figures of a training monitor (:mod:`gradflow.monitor`), drawn from its store alone: how each layer's lag profile
evolved over training, and its horizon and decay rate against the training step."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize

from gradflow.monitor.store import open_monitor
from gradflow.plot.style import CMAP, STYLE, WRT_LABELS, cell_edges, save_figure

#: Profiles drawn as lines in the evolution figure (evenly spread over the recorded steps).
LINE_STEPS = 6

_STEP_LABELS = {"step": "training step", "batch": "training batch (optimizer iteration)", "epoch": "epoch"}


def _layer_title(dataset, i: int) -> str:
    direction = str(dataset["layer_direction"].values[i])
    return (f"layer {int(dataset['layer_index'].values[i])}{'' if direction == 'forward' else ' ' + direction}"
            f" ({str(dataset['layer_cell'].values[i]).upper()}, H = {int(dataset['layer_hidden_size'].values[i])})")


def _finite_limits(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return -1.0, 0.0
    low, high = float(finite.min()), float(finite.max())
    return (low - 0.5, high + 0.5) if low == high else (low, high)


def plot_profile_evolution(dataset, path_stem: Path) -> list[Path]:
    """Per layer (rows): the profile over training as a step x lag image of log10 norms, and the profiles at up to
    :data:`LINE_STEPS` steps as lines coloured by step."""
    steps, lags = dataset["step"].values, dataset["lag"].values
    profiles = dataset["log10_norm_h"].values  # (S, L, T)
    step_label = _STEP_LABELS.get(dataset.attrs.get("every_unit"), "training step")
    norm_label = WRT_LABELS.get(dataset.attrs.get("wrt", "h"), "$\\log_{10}$ norm")
    n_layers = profiles.shape[1]
    chosen = np.unique(np.linspace(0, steps.size - 1, min(LINE_STEPS, steps.size)).round().astype(int))
    cmap = plt.get_cmap(CMAP)
    step_norm = Normalize(float(steps.min()), float(steps.max()) if steps.max() > steps.min() else steps.min() + 1.0)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(n_layers, 2, figsize=(7.2, 2.4 * n_layers), squeeze=False, constrained_layout=True)
        for layer in range(n_layers):
            image_ax, lines_ax = axes[layer]
            values = profiles[:, layer, :]
            low, high = _finite_limits(values)
            mesh = image_ax.pcolormesh(cell_edges(lags), cell_edges(steps), np.ma.masked_invalid(values), cmap=CMAP,
                                       vmin=low, vmax=high, shading="flat")
            fig.colorbar(mesh, ax=image_ax).set_label(norm_label)
            image_ax.set_ylabel(step_label)
            image_ax.set_title(_layer_title(dataset, layer))
            for s in chosen:
                lines_ax.plot(lags, values[s], color=cmap(step_norm(steps[s])), lw=1.0)
            lines_ax.set_ylabel(norm_label)
            lines_ax.grid(alpha=0.3, lw=0.5)
            bar = fig.colorbar(plt.cm.ScalarMappable(norm=step_norm, cmap=cmap), ax=lines_ax)
            bar.set_label(step_label)
        for ax in axes[-1]:
            ax.set_xlabel("lag $T - t$ (steps)")
        fig.suptitle(f"Lag profiles over training (probe batch {tuple(dataset.attrs.get('probe_shape', ()))})",
                     fontsize=9)
        return save_figure(fig, path_stem)


def plot_horizon(dataset, path_stem: Path) -> list[Path]:
    """Horizon and decay rate against the training step, one line per layer; an infinite horizon (the profile
    never below ``10^-decades`` within T lags) is an open triangle at T."""
    steps = dataset["step"].values
    horizon, rate = dataset["horizon"].values, dataset["decay_rate"].values  # (S, L)
    T = dataset["lag"].size
    step_label = _STEP_LABELS.get(dataset.attrs.get("every_unit"), "training step")
    decades = dataset.attrs.get("decades", 10.0)
    cmap = plt.get_cmap(CMAP)
    n_layers = horizon.shape[1]
    with plt.rc_context(STYLE):
        fig, (h_ax, r_ax) = plt.subplots(1, 2, figsize=(7.2, 2.8), constrained_layout=True)
        for layer in range(n_layers):
            colour = cmap(0.1 + 0.8 * layer / max(n_layers - 1, 1))
            label = _layer_title(dataset, layer)
            finite = np.where(np.isfinite(horizon[:, layer]), horizon[:, layer], np.nan)
            h_ax.plot(steps, finite, color=colour, lw=1.0, marker=".", ms=3, label=label)
            beyond = np.isposinf(horizon[:, layer])
            if beyond.any():
                h_ax.plot(steps[beyond], np.full(beyond.sum(), T), ls="none", marker="^", mfc="none", color=colour,
                          ms=4, label=f"{label}: beyond T = {T}")
            r_ax.plot(steps, rate[:, layer], color=colour, lw=1.0, marker=".", ms=3, label=label)
        h_ax.set_ylabel(f"horizon: first lag below $10^{{-{decades:g}}}$ (steps)")
        r_ax.set_ylabel("decay rate (decades per step)")
        for ax in (h_ax, r_ax):
            ax.set_xlabel(step_label)
            ax.grid(alpha=0.3, lw=0.5)
        h_ax.legend(frameon=False, fontsize=7)
        return save_figure(fig, path_stem)


def plot_monitor(store_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw a monitor store's figures into ``out_dir`` (PDF and PNG): ``monitor_profiles`` and ``monitor_horizon``.

    Raises:
      FileNotFoundError: if ``store_dir`` holds no store; ValueError if it is not a monitor's or has no record.
    """
    dataset = open_monitor(store_dir).load()
    if dataset.sizes["step"] == 0:
        raise ValueError(f"the monitor store in {str(store_dir)!r} holds no record yet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return plot_profile_evolution(dataset, out / "monitor_profiles") + plot_horizon(dataset, out / "monitor_horizon")
