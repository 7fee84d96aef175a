"""The collapse map and the loss curves, drawn from a collapse store alone, and the onset table beside them.

The map's two axes are ``[analysis].map`` (default: the first two swept settings other than the seed); every
other dimension with more than one value is averaged over, and the title says which. Colour: validation
accuracy (loss ratio for regression); hatched grey: collapsed cells; solid black line: the onset of collapse
along the x axis in every row; dashed line: the onset of learning failure; white contours: the initial
lag-profile value at the task's lag, ``log10 ||dh_T/dh_{T-lag}||`` before training. The hatching, both lines and
the onset table come from one :func:`gradflow.collapse.table.collapse_regions` (its docstring states the
definition): a cell is collapsed when at least half of its variants collapsed, and the line runs along the
edge where a row first passes from not collapsed to collapsed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.patheffects import withStroke

from gradflow.collapse.table import CollapseRegions, collapse_regions, collapse_table, mean_over_others, table_markdown
from gradflow.plot.style import (
    CATEGORICAL,
    LINESTYLES,
    SEQUENTIAL,
    axis_label,
    figure_size,
    in_house_style,
    new_axes,
    positions,
    save_figure,
)
from gradflow.sweep.results import Results

#: How the collapsed cells and the two onset lines are drawn (the legend is built from the same values).
HATCH = {"facecolor": (0.55, 0.55, 0.55, 0.75), "edgecolor": "0.15", "hatch": "////", "linewidth": 0}
COLLAPSE_LINE = {"color": "k", "linestyle": "-", "linewidth": 1.6}
FAILURE_LINE = {"color": CATEGORICAL[5], "linestyle": "--", "linewidth": 1.4}
ACCURACY_LABEL = "validation accuracy\n(fraction correct)"
LOSS_RATIO_LABEL = "validation loss /\nbest constant predictor's"
CONTOUR_LABEL = r"initial $\log_{10}\|\partial h_T/\partial h_{T-k}\|$, $k$ = task lag"


@in_house_style
def plot_collapse_map(results: Results, *, ax=None, regions: CollapseRegions | None = None):
    """The phase diagram described in the module docstring (a line plot if only one axis is swept); returns the Axes.

    ``regions``: :func:`~gradflow.collapse.table.collapse_regions` of ``results`` if already computed.
    """
    regions = collapse_regions(results) if regions is None else regions
    if not regions.axes:
        raise ValueError("the collapse map needs a swept setting other than the seed; this store sweeps "
                         f"{list(results.dims)} with one value each")
    ax = new_axes(ax, size=figure_size(1, 1.0))
    _draw_collapse_map(ax, results, regions)
    return ax


def _draw_collapse_map(ax, results, regions):
    keep = regions.axes
    accuracy = mean_over_others(results, "final_val_accuracy", keep)
    regression = bool(np.all(np.isnan(accuracy)))
    colour = mean_over_others(results, "loss_ratio", keep) if regression else accuracy
    label = LOSS_RATIO_LABEL if regression else ACCURACY_LABEL
    n = regions.variants_per_cell
    hatched = f"collapsed (at least {(n + 1) // 2} of a cell's {n} variants)" if n > 1 else "collapsed"
    if len(keep) == 1:
        _draw_line_map(ax, results, regions, colour, label, hatched)
    else:
        _draw_phase_map(ax, results, regions, colour, label, regression, hatched)
    note = regions.reduction_note(sep="; ")
    ax.set_title("Collapse map" + (f"\n({note})" if note else ""))


def _draw_line_map(ax, results, regions, colour, label, hatched):
    x = positions(ax, regions.coords[0], "x")
    edges = regions.edges[0]
    for i in np.flatnonzero(regions.collapsed):
        ax.add_patch(Rectangle((edges[i], 0), edges[i + 1] - edges[i], 1, transform=ax.get_xaxis_transform(), **HATCH))
    ax.plot(x, colour, marker="o", ms=3, color=CATEGORICAL[0], linestyle=LINESTYLES[0], label=label)
    ax.plot(x, regions.collapsed_fraction, marker="s", ms=3, color=CATEGORICAL[1], linestyle=LINESTYLES[1],
            label="fraction of variants collapsed")
    if regions.log[0]:
        ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(axis_label(regions.axes[0]))
    ax.set_ylabel("fraction" if label == ACCURACY_LABEL else "ratio or fraction (1)")
    handles = [Patch(**HATCH, label=hatched), *ax.get_legend_handles_labels()[0]]
    _legend_below(ax, handles)


def _draw_phase_map(ax, results, regions, colour, label, regression, hatched):
    keep = regions.axes
    x, y = (positions(ax, c, a) for c, a in zip(regions.coords, "xy"))
    ex, ey = regions.edges
    finite = colour[np.isfinite(colour)]
    if regression:
        norm = {"vmin": 0.0, "vmax": max(1.0, float(finite.max())) if finite.size else 1.0}
    else:
        norm = {"vmin": min(0.5, float(finite.min())) if finite.size else 0.5, "vmax": 1.0}
    cmap = SEQUENTIAL + ("_r" if regression else "")  # light = good in both
    mesh = ax.pcolormesh(ex, ey, np.ma.masked_invalid(colour).T, cmap=cmap, shading="flat", **norm)
    ax.figure.colorbar(mesh, ax=ax).set_label(label)
    for i, j in zip(*np.nonzero(regions.collapsed)):
        ax.add_patch(Rectangle((ex[i], ey[j]), ex[i + 1] - ex[i], ey[j + 1] - ey[j], **HATCH))
    handles = [Patch(**HATCH, label=hatched)]
    if keep[0] in regions.onsets:
        for onsets, style, name, gid in (
                (regions.onsets[keep[0]], COLLAPSE_LINE, "onset of collapse", "collapse-onset"),
                (regions.failure_onsets[keep[0]], FAILURE_LINE, "onset of failure (at most half learned)",
                 "failure-onset")):
            xs, ys = onset_staircase(onsets.onset, ex, ey)
            if xs.size:
                ax.plot(xs, ys, gid=gid, label=name, **style)
                handles.append(Line2D([], [], label=name, **style))
    initial = mean_over_others(results, "initial_log10_norm_at_lag", keep)
    if np.isfinite(initial).sum() >= 4 and np.nanmax(initial) > np.nanmin(initial):
        levels = np.unique(np.round(np.linspace(np.nanmin(initial), np.nanmax(initial), 6)[1:-1]))
        cs = ax.contour(x, y, np.ma.masked_invalid(initial).T, levels=levels, colors="white", linewidths=0.8,
                        linestyles="solid")
        ax.clabel(cs, fmt="%g", fontsize=7)
        handles.append(Line2D([], [], color="white", linewidth=0.8, label=CONTOUR_LABEL,
                              path_effects=[withStroke(linewidth=2.0, foreground="0.35")]))
    ax.set_xscale("log" if regions.log[0] else "linear")
    ax.set_yscale("log" if regions.log[1] else "linear")
    ax.set_xlim(ex[0], ex[-1])
    ax.set_ylim(ey[0], ey[-1])
    ax.set_xlabel(axis_label(keep[0]))
    ax.set_ylabel(axis_label(keep[1]))
    _legend_below(ax, handles)


def _legend_below(ax, handles) -> None:
    """A legend under the x axis's tick labels and label, whatever the Axes' height."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.transforms import ScaledTranslation

    rc = plt.rcParams
    points = sum(FontProperties(size=rc[k]).get_size_in_points() for k in ("xtick.labelsize", "axes.labelsize"))
    points += rc["xtick.major.size"] + rc["xtick.major.pad"] + rc["axes.labelpad"] + 4
    below = ax.transAxes + ScaledTranslation(0, -points / 72, ax.figure.dpi_scale_trans)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=1, fontsize=7,
              frameon=False, borderaxespad=0)


def onset_staircase(onsets: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices of the onset line: in row ``j`` a vertical segment at ``onsets[j]`` from ``y_edges[j]`` to
    ``y_edges[j + 1]``, joined to the next row's along their shared edge; NaN (no onset) breaks the line and an
    onset before the range (``-inf``/``+inf``) is drawn at the map's outer edge.

    Example:
      >>> xs, ys = onset_staircase(np.array([1.5, np.nan, -np.inf]), np.array([0.0, 1, 2, 3]), np.array([0.0, 1, 2, 3]))
      >>> xs.tolist(), ys.tolist()
      ([1.5, 1.5, nan, 0.0, 0.0], [0.0, 1.0, nan, 2.0, 3.0])
    """
    xs, ys = [], []
    for j, value in enumerate(np.asarray(onsets, np.float64)):
        if np.isnan(value):
            if xs and not np.isnan(xs[-1]):
                xs.append(np.nan)
                ys.append(np.nan)
            continue
        at = x_edges[0] if value == -np.inf else x_edges[-1] if value == np.inf else value
        xs += [at, at]
        ys += [y_edges[j], y_edges[j + 1]]
    if xs and np.isnan(xs[-1]):
        xs, ys = xs[:-1], ys[:-1]
    return np.array(xs, np.float64), np.array(ys, np.float64)


#: The loss curves' groups, from the stored verdicts: learned and not collapsed; neither learned nor collapsed (the
#: outputs vary, but not usefully); collapsed.
GROUPS = ("learned", "not learned", "collapsed")


@in_house_style
def plot_loss_curves(results: Results, *, ax=None):
    """Training loss against step for learned, collapsed and other variants (median and quartiles of each group,
    labelled at the line ends with the group's size); returns the Axes."""
    ax = new_axes(ax)
    _draw_loss_curves(ax, results)
    return ax


def _draw_loss_curves(ax, results):
    loss = results.data["train_loss"].reshape(-1, results.data["train_loss"].shape[-1]).astype(np.float64)
    collapsed = results.data["collapsed"].reshape(-1)
    learned = results.data["learned"].reshape(-1) & ~collapsed
    masks = (learned, ~learned & ~collapsed, collapsed)
    steps = np.asarray(results.coords["step"])
    ends = []
    for k, (name, mask) in enumerate(zip(GROUPS, masks)):
        if not mask.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            q = np.nanpercentile(np.where(np.isfinite(loss[mask]), loss[mask], np.nan), [25, 50, 75], axis=0)
        colour, style = CATEGORICAL[k], LINESTYLES[k]
        ax.plot(steps, q[1], color=colour, linestyle=style, label=f"{name} ({int(mask.sum())})", gid=name)
        ax.fill_between(steps, q[0], q[2], color=colour, alpha=0.2, lw=0)
        last = np.flatnonzero(np.isfinite(q[1]))
        if last.size:
            ends.append((steps[last[-1]], q[1][last[-1]], f"{name} ({int(mask.sum())})", colour))
    values = np.concatenate([line.get_ydata() for line in ax.lines]) if ax.lines else np.array([])
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() >= 10:
        ax.set_yscale("log")
    ax.set_xlim(0, steps[-1])
    regression = bool(np.all(np.isnan(results.data["final_val_accuracy"])))
    unit = "squared target units" if regression else "nats"
    ax.set_xlabel("training step")
    ax.set_ylabel(f"minibatch training loss ({unit})")
    ax.set_title("median and quartiles per outcome", fontsize=8)
    _label_line_ends(ax, ends)


def _label_line_ends(ax, ends: list[tuple[float, float, str, str]], gap: float = 0.08) -> None:
    """Label lines right of the Axes at their last points, moved apart to at least ``gap`` (Axes fraction)."""
    if not ends:
        return
    ax.autoscale_view()
    ax.set_ylim(*ax.get_ylim())  # fix the limits the labels are placed against
    to_axes = ax.transScale + ax.transLimits
    heights = np.array([to_axes.transform((x, y))[1] for x, y, _, _ in ends])
    order = np.argsort(heights)
    placed = heights[order].copy()
    for i in range(1, placed.size):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    overshoot = max(0.0, placed[-1] - 1.0)
    placed -= overshoot
    for i in range(placed.size - 2, -1, -1):
        placed[i] = min(placed[i], placed[i + 1] - gap)
    for k, height in zip(order, placed):
        _, _, text, colour = ends[k]
        ax.annotate(text, xy=(1.0, heights[k]), xycoords="axes fraction", xytext=(1.03, height),
                    textcoords="axes fraction", va="center", ha="left", color=colour, fontsize=7,
                    arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5, "shrinkA": 0, "shrinkB": 0})


def plot_collapse_all(results: Results, directory: str | Path) -> list[Path]:
    """The collapse map, the loss curves and the onset table (``collapse_table.md`` and ``.json``), all from one
    :func:`~gradflow.collapse.table.collapse_regions`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    regions = collapse_regions(results)
    paths = save_figure(plot_collapse_map(results, regions=regions).figure, directory / "collapse_map")
    paths += save_figure(plot_loss_curves(results).figure, directory / "loss_curves")
    table = collapse_table(results, regions)
    (directory / "collapse_table.md").write_text(table_markdown(table))
    (directory / "collapse_table.json").write_text(json.dumps(table, indent=2, allow_nan=False) + "\n")
    return paths + [directory / "collapse_table.md", directory / "collapse_table.json"]
