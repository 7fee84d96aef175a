"""Figures of a training monitor (:mod:`gradflow.monitor`), drawn from its store alone: how each layer's lag profile
evolved over training, and its horizon and decay rate against the training step.

One-Axes functions (``ax=`` a panel of your figure, or None for a new one-column figure): :func:`plot_profile_image`,
:func:`plot_profile_evolution`, :func:`plot_horizon`, :func:`plot_decay_rate`; :func:`profile_evolution_figure` and
:func:`horizon_figure` compose them, :func:`plot_monitor` writes both.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize

from gradflow.monitor.store import open_monitor
from gradflow.plot.style import (
    CATEGORICAL,
    LINESTYLES,
    MARKERS,
    SEQUENTIAL,
    STYLE,
    WRT_LABELS,
    cell_edges,
    figure_size,
    in_house_style,
    new_axes,
    save_figure,
)

#: Profiles drawn as lines in the evolution figure (evenly spread over the recorded steps).
LINE_STEPS = 6

_STEP_LABELS = {"step": "training step", "batch": "training batch (optimizer iteration)", "epoch": "epoch"}
_LAG_LABEL = "lag $T - t$ (steps)"


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


def _step_label(dataset) -> str:
    return _STEP_LABELS.get(dataset.attrs.get("every_unit"), "training step")


def _norm_label(dataset) -> str:
    return WRT_LABELS.get(dataset.attrs.get("wrt", "h"), "$\\log_{10}$ norm")


def _check_layer(dataset, layer: int) -> None:
    n = dataset["log10_norm_h"].shape[1]
    if not 0 <= layer < n:
        raise ValueError(f"layer={layer!r}: the monitor recorded {n} layers (indices 0..{n - 1})")


@in_house_style
def plot_profile_image(dataset, *, layer: int = 0, ax=None):
    """One layer's profile over training: a step x lag image of log10 norms with its colour bar. Returns the Axes."""
    _check_layer(dataset, layer)
    ax = new_axes(ax)
    steps, lags = dataset["step"].values, dataset["lag"].values
    values = dataset["log10_norm_h"].values[:, layer, :]
    low, high = _finite_limits(values)
    mesh = ax.pcolormesh(cell_edges(lags), cell_edges(steps), np.ma.masked_invalid(values), cmap=SEQUENTIAL,
                         vmin=low, vmax=high, shading="flat")
    ax.figure.colorbar(mesh, ax=ax).set_label(_norm_label(dataset))
    ax.set_xlabel(_LAG_LABEL)
    ax.set_ylabel(_step_label(dataset))
    ax.set_title(_layer_title(dataset, layer))
    return ax


@in_house_style
def plot_profile_evolution(dataset, *, layer: int = 0, ax=None):
    """One layer's profiles at up to :data:`LINE_STEPS` recorded steps, coloured by step (:data:`SEQUENTIAL`, with a
    colour bar labelled with the step's unit). Returns the Axes."""
    _check_layer(dataset, layer)
    ax = new_axes(ax)
    steps, lags = dataset["step"].values, dataset["lag"].values
    values = dataset["log10_norm_h"].values[:, layer, :]
    chosen = np.unique(np.linspace(0, steps.size - 1, min(LINE_STEPS, steps.size)).round().astype(int))
    low, high = float(steps.min()), float(steps.max())
    step_norm = Normalize(low, high if high > low else low + 1.0)
    cmap = plt.get_cmap(SEQUENTIAL)
    for s in chosen:
        ax.plot(lags, values[s], color=cmap(step_norm(steps[s])), lw=1.0)
    bar = ax.figure.colorbar(plt.cm.ScalarMappable(norm=step_norm, cmap=cmap), ax=ax)
    bar.set_label(_step_label(dataset))
    ax.set_xlabel(_LAG_LABEL)
    ax.set_ylabel(_norm_label(dataset))
    ax.set_title(_layer_title(dataset, layer))
    ax.grid(alpha=0.3, lw=0.5)
    return ax


def _per_layer(dataset, ax, values: np.ndarray, *, beyond_at: float | None = None) -> None:
    steps = dataset["step"].values
    for layer in range(values.shape[1]):
        n = layer % len(CATEGORICAL)
        label = _layer_title(dataset, layer)
        column = values[:, layer]
        ax.plot(steps, np.where(np.isfinite(column), column, np.nan), color=CATEGORICAL[n], ls=LINESTYLES[n],
                marker=MARKERS[n], lw=1.0, ms=3, label=label)
        beyond = np.isposinf(column)
        if beyond_at is not None and beyond.any():
            ax.plot(steps[beyond], np.full(beyond.sum(), beyond_at), ls="none", marker="^", mfc="none",
                    color=CATEGORICAL[n], ms=4, label=f"{label}: beyond T = {beyond_at:g}")
    ax.set_xlabel(_step_label(dataset))
    ax.grid(alpha=0.3, lw=0.5)


@in_house_style
def plot_horizon(dataset, *, ax=None, legend: bool = True):
    """Each layer's horizon against the training step (a categorical colour, marker and line style per layer); an
    infinite horizon (the profile never below ``10^-decades`` within T lags) is an open triangle at T.

    Returns the Axes."""
    ax = new_axes(ax)
    T = dataset["lag"].size
    _per_layer(dataset, ax, dataset["horizon"].values, beyond_at=float(T))
    decades = dataset.attrs.get("decades", 10.0)
    ax.set_ylabel(f"horizon (steps): first lag\nwith norm < $10^{{-{decades:g}}}$")
    if legend:
        ax.legend(fontsize=7)
    return ax


@in_house_style
def plot_decay_rate(dataset, *, ax=None, legend: bool = True):
    """Each layer's decay rate (decades per step) against the training step. Returns the Axes."""
    ax = new_axes(ax)
    _per_layer(dataset, ax, dataset["decay_rate"].values)
    ax.set_ylabel("decay rate (decades per step)")
    if legend:
        ax.legend(fontsize=7)
    return ax


def profile_evolution_figure(dataset):
    """Per layer (rows): :func:`plot_profile_image` and :func:`plot_profile_evolution`. Returns the Figure."""
    n_layers = dataset["log10_norm_h"].shape[1]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(n_layers, 2, figsize=(figure_size(2)[0], 2.3 * n_layers + 0.3), squeeze=False,
                                 layout="constrained")
        for layer in range(n_layers):
            plot_profile_image(dataset, layer=layer, ax=axes[layer, 0])
            plot_profile_evolution(dataset, layer=layer, ax=axes[layer, 1])
        fig.suptitle(f"Lag profiles over training (probe batch {tuple(dataset.attrs.get('probe_shape', ()))})",
                     fontsize=9)
    return fig


def horizon_figure(dataset):
    """:func:`plot_horizon` and :func:`plot_decay_rate` side by side, one legend of the layers. Returns the Figure."""
    with plt.rc_context(STYLE):
        fig, (h_ax, r_ax) = plt.subplots(1, 2, figsize=figure_size(2, 0.38), layout="constrained")
        plot_horizon(dataset, ax=h_ax, legend=False)
        plot_decay_rate(dataset, ax=r_ax, legend=False)
        handles, labels = h_ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 2), fontsize=7)
    return fig


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
    return (save_figure(profile_evolution_figure(dataset), out / "monitor_profiles")
            + save_figure(horizon_figure(dataset), out / "monitor_horizon"))
