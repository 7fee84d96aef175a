"""The collapse map: a phase diagram and a table of onsets, drawn from a collapse store alone.

The map's two axes are ``[analysis].map`` (default: the first two swept settings other than the
seed); every other dimension is averaged over. Colour: validation accuracy (loss ratio for
regression); hatched grey: where at least half of the variants collapsed; black line: the onset of
collapse along the x axis for every y value; white contours: the initial lag-profile value at the
task's lag, ``log10 ||dh_T/dh_{T-lag}||`` before training.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch, Rectangle

from gradflow.collapse.metrics import onset
from gradflow.collapse.table import collapse_table, map_axes, mean_over_others, table_markdown
from gradflow.plot.style import CMAP, STYLE, axis_label, cell_edges, is_log_axis, positions, save_figure
from gradflow.sweep.results import Results, is_numeric


def plot_collapse_map(results: Results, path_stem: str | Path) -> list[Path]:
    """The phase diagram described in the module docstring (a line plot if only one axis is swept)."""
    keep = map_axes(results)
    accuracy = mean_over_others(results, "final_val_accuracy", keep)
    regression = np.all(np.isnan(accuracy))
    colour = mean_over_others(results, "loss_ratio", keep) if regression else accuracy
    fraction = mean_over_others(results, "collapsed", keep)
    initial = mean_over_others(results, "initial_log10_norm_at_lag", keep)
    label = "validation loss / best constant" if regression else "validation accuracy"
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.6, 3.4), constrained_layout=True)
        if len(keep) == 1:
            x = positions(ax, results.coords[keep[0]], "x")
            ax.plot(x, colour, "o-", color=plt.get_cmap(CMAP)(0.2), label=label)
            ax.plot(x, fraction, "s--", color="0.4", label="fraction collapsed")
            ax.set_xlabel(axis_label(keep[0]))
            ax.legend(frameon=False)
        else:
            x, y = (positions(ax, results.coords[d], a) for d, a in zip(keep, "xy"))
            mesh = ax.pcolormesh(cell_edges(x), cell_edges(y), np.ma.masked_invalid(colour).T, cmap=CMAP, shading="flat",
                                 vmin=None if regression else min(0.5, np.nanmin(colour)), vmax=None if regression else 1)
            fig.colorbar(mesh, ax=ax).set_label(label)
            collapsed = fraction >= 0.5
            if collapsed.any():
                ex, ey = cell_edges(x), cell_edges(y)
                for i, j in zip(*np.nonzero(collapsed)):
                    cell = (ex[i], ey[j]), ex[i + 1] - ex[i], ey[j + 1] - ey[j]
                    ax.add_patch(Rectangle(*cell, facecolor="0.55", alpha=0.8, lw=0))
                    ax.add_patch(Rectangle(*cell, fill=False, hatch="////", edgecolor="0.15", lw=0))
            if is_numeric(results.coords[keep[0]]):
                learned = mean_over_others(results, "learned", keep)
                for region, style, colour, name in ((fraction >= 0.5, "-o", "k", "onset of collapse"),
                                                    (learned <= 0.5, "--s", "#E69F00", "onset of learning failure")):
                    onsets, _ = onset(region, x, axis=0)
                    finite = np.isfinite(onsets)
                    if finite.any():
                        ax.plot(onsets[finite], y[finite], style, color=colour, ms=3, lw=1.4, label=name,
                                mec="k", mew=0.5)
            if np.isfinite(initial).sum() >= 4 and np.nanmax(initial) > np.nanmin(initial):
                levels = np.unique(np.round(np.linspace(np.nanmin(initial), np.nanmax(initial), 6)[1:-1]))
                cs = ax.contour(x, y, np.ma.masked_invalid(initial).T, levels=levels, colors="white", linewidths=0.8,
                                linestyles="solid")
                ax.clabel(cs, fmt="%g", fontsize=7)
            for values, axis in ((x, "x"), (y, "y")):
                if is_log_axis(values):
                    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
            ax.set_xlabel(axis_label(keep[0]))
            ax.set_ylabel(axis_label(keep[1]))
            handles = [Patch(facecolor="0.55", edgecolor="0.15", hatch="////", lw=0, label="collapsed (>= half of variants)")]
            handles += ax.get_legend_handles_labels()[0]
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
        others = [d for d in results.dims if d not in keep]
        note = f"mean over {', '.join(others)}; " if others else ""
        ax.set_title(f"Output collapse\n({note}white: initial log10 norm at the task's lag)", fontsize=8)
        return save_figure(fig, Path(path_stem))


def plot_loss_curves(results: Results, path_stem: str | Path) -> list[Path]:
    """Training loss against step for learned, collapsed and other variants (median and quartiles of each)."""
    loss = results.data["train_loss"].reshape(-1, results.data["train_loss"].shape[-1])
    collapsed = results.data["collapsed"].reshape(-1)
    learned = results.data["learned"].reshape(-1) & ~collapsed
    groups = (
        (learned, "learned", plt.get_cmap(CMAP)(0.95)),
        (~learned & ~collapsed, "not learned, outputs vary", plt.get_cmap(CMAP)(0.15)),
        (collapsed, "collapsed", "0.45"),
    )
    steps = results.coords["step"]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 3.0), constrained_layout=True)
        for mask, name, colour in groups:
            if mask.any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    q = np.nanpercentile(loss[mask], [25, 50, 75], axis=0)
                ax.plot(steps, q[1], color=colour, label=f"{name} ({int(mask.sum())})", lw=1.0)
                ax.fill_between(steps, q[0], q[2], color=colour, alpha=0.25, lw=0)
        ax.set_xlabel("training step")
        ax.set_ylabel("minibatch loss (median, quartiles)")
        ax.legend(frameon=False)
        ax.grid(alpha=0.3, lw=0.5)
        return save_figure(fig, Path(path_stem))


def plot_collapse_all(results: Results, directory: str | Path) -> list[Path]:
    """The collapse map, the loss curves and the onset table (``collapse_table.md`` and ``.json``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = plot_collapse_map(results, directory / "collapse_map") + plot_loss_curves(results, directory / "loss_curves")
    table = collapse_table(results)
    (directory / "collapse_table.md").write_text(table_markdown(table))
    (directory / "collapse_table.json").write_text(json.dumps(table, indent=2, allow_nan=False) + "\n")
    return paths + [directory / "collapse_table.md", directory / "collapse_table.json"]
