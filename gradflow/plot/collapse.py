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

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from gradflow.collapse.metrics import best_threshold, onset  # noqa: E402
from gradflow.plot.profiles import CMAP, STYLE, _edges, _is_log_axis, _is_numeric, _label, _positions, _save  # noqa: E402
from gradflow.sweep.results import Results  # noqa: E402


def _mean_over_others(results: Results, name: str, keep: tuple[str, ...]) -> np.ndarray:
    """``name`` averaged (NaN-aware) over every dimension outside ``keep``, in ``keep`` order."""
    array = results.data[name].astype(np.float64)
    dims = list(results.dims)
    others = tuple(dims.index(d) for d in dims if d not in keep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reduced = np.nanmean(array, axis=others) if others else array
    rest = [d for d in dims if d in keep]
    return np.transpose(reduced, [rest.index(d) for d in keep])


def map_axes(results: Results) -> tuple[str, ...]:
    """The map's axes: the config's ``[analysis].map``, else the first two swept settings (not the seed)."""
    configured = results.attrs.get("config", {}).get("analysis", {}).get("map") or []
    axes = [d for d in configured if d in results.dims]
    if len(axes) < 2:
        axes = [d for d in results.dims if d != "seed" and results.coords[d].size > 1][:2]
    return tuple(axes)


def collapse_table(results: Results) -> dict:
    """Where collapse (and, separately, learning failure) begins along each map axis, and the
    initial-norm thresholds that best separate the outcomes."""
    keep = map_axes(results)
    table = {"map_axes": list(keep), "collapsed_fraction": float(np.mean(results.data["collapsed"])),
             "learned_fraction": float(np.mean(results.data["learned"])), "onsets": {}, "failure_onsets": {}}
    outcomes = (("onsets", "collapsed", False), ("failure_onsets", "learned", True))
    for key, name, negate in outcomes:
        fraction = _mean_over_others(results, name, keep)
        region = (fraction <= 0.5) if negate else (fraction >= 0.5)
        for axis, other in ((0, 1), (1, 0)):
            if len(keep) < 2 or not _is_numeric(results.coords[keep[axis]]):
                continue
            onsets, direction = onset(region, results.coords[keep[axis]], axis=axis)
            table[key][keep[axis]] = {
                "direction": f"at {'larger' if direction > 0 else 'smaller'} values",
                "per": keep[other],
                "values": [v.item() if hasattr(v, "item") else v for v in results.coords[keep[other]]],
                "onset": [_plain(v) for v in onsets],
            }
    initial = results.data["initial_log10_norm_at_lag"]
    for key, outcome in (("initial_norm_threshold", results.data["collapsed"]),
                         ("initial_norm_threshold_learning", ~results.data["learned"])):
        threshold = best_threshold(initial, outcome)
        table[key] = {k: _plain(v) if isinstance(v, float) else v for k, v in threshold.items()}
    return table


def _plain(value: float):
    """A float as JSON has it: NaN -> None, infinities -> "-inf" / "inf"."""
    value = float(value)
    if np.isnan(value):
        return None
    return "-inf" if value == -np.inf else "inf" if value == np.inf else value


def _fmt(value) -> str:
    if value is None:
        return "none"
    if value in ("-inf", "inf"):
        return {"-inf": "before the range", "inf": "after the range"}[value]
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _threshold_line(t: dict, outcome: str) -> str:
    if t["side"] == "none":
        return f"- {outcome}: not measurable (every variant had the same outcome, or the task has no signal lag)."
    return (f"- {outcome} when the initial value is {t['side']} {_fmt(t['threshold'])}: balanced accuracy "
            f"{t['balanced_accuracy']:.3f} over {t['n']} variants (0.5 is chance).")


def table_markdown(table: dict) -> str:
    lines = ["# Collapse map", "",
             f"Variants collapsed (predict nearly the same value for every input): {100 * table['collapsed_fraction']:.1f}%. "
             f"Variants that learned (beat the best constant predictor): {100 * table['learned_fraction']:.1f}%.", ""]
    for key, what in (("onsets", "Onset of collapse"), ("failure_onsets", "Onset of learning failure")):
        for axis, entry in table[key].items():
            lines += [f"## {what} along {axis} ({entry['direction']})", "",
                      f"| {entry['per']} | onset in {axis} |", "|---|---|"]
            lines += [f"| {_fmt(v)} | {_fmt(o)} |" for v, o in zip(entry["values"], entry["onset"])]
            lines.append("")
    lines += ["## Does the initial gradient flow predict the outcome?", "",
              "Best single threshold on the initial log10 ||dh_T/dh_(T-lag)|| at the task's lag:", ""]
    lines.append(_threshold_line(table["initial_norm_threshold"], "collapsed"))
    lines.append(_threshold_line(table["initial_norm_threshold_learning"], "not learned"))
    return "\n".join(lines) + "\n"


def plot_collapse_map(results: Results, path_stem: str | Path) -> list[Path]:
    """The phase diagram described in the module docstring (a line plot if only one axis is swept)."""
    keep = map_axes(results)
    accuracy = _mean_over_others(results, "final_val_accuracy", keep)
    regression = np.all(np.isnan(accuracy))
    colour = _mean_over_others(results, "loss_ratio", keep) if regression else accuracy
    fraction = _mean_over_others(results, "collapsed", keep)
    initial = _mean_over_others(results, "initial_log10_norm_at_lag", keep)
    label = "validation loss / best constant" if regression else "validation accuracy"
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.6, 3.4), constrained_layout=True)
        if len(keep) == 1:
            x = _positions(ax, results.coords[keep[0]], "x")
            ax.plot(x, colour, "o-", color=plt.get_cmap(CMAP)(0.2), label=label)
            ax.plot(x, fraction, "s--", color="0.4", label="fraction collapsed")
            ax.set_xlabel(_label(keep[0]))
            ax.legend(frameon=False)
        else:
            x, y = (_positions(ax, results.coords[d], a) for d, a in zip(keep, "xy"))
            mesh = ax.pcolormesh(_edges(x), _edges(y), np.ma.masked_invalid(colour).T, cmap=CMAP, shading="flat",
                                 vmin=None if regression else min(0.5, np.nanmin(colour)), vmax=None if regression else 1)
            fig.colorbar(mesh, ax=ax).set_label(label)
            collapsed = fraction >= 0.5
            if collapsed.any():
                ex, ey = _edges(x), _edges(y)
                for i, j in zip(*np.nonzero(collapsed)):
                    cell = (ex[i], ey[j]), ex[i + 1] - ex[i], ey[j + 1] - ey[j]
                    ax.add_patch(Rectangle(*cell, facecolor="0.55", alpha=0.8, lw=0))
                    ax.add_patch(Rectangle(*cell, fill=False, hatch="////", edgecolor="0.15", lw=0))
            if _is_numeric(results.coords[keep[0]]):
                learned = _mean_over_others(results, "learned", keep)
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
                if _is_log_axis(values):
                    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
            ax.set_xlabel(_label(keep[0]))
            ax.set_ylabel(_label(keep[1]))
            handles = [Patch(facecolor="0.55", edgecolor="0.15", hatch="////", lw=0, label="collapsed (>= half of variants)")]
            handles += ax.get_legend_handles_labels()[0]
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
        others = [d for d in results.dims if d not in keep]
        note = f"mean over {', '.join(others)}; " if others else ""
        ax.set_title(f"Output collapse\n({note}white: initial log10 norm at the task's lag)", fontsize=8)
        return _save(fig, Path(path_stem))


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
        return _save(fig, Path(path_stem))


def plot_collapse_all(results: Results, directory: str | Path) -> list[Path]:
    """The collapse map, the loss curves and the onset table (``collapse_table.md`` and ``.json``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = plot_collapse_map(results, directory / "collapse_map") + plot_loss_curves(results, directory / "loss_curves")
    table = collapse_table(results)
    (directory / "collapse_table.md").write_text(table_markdown(table))
    (directory / "collapse_table.json").write_text(json.dumps(table, indent=2, allow_nan=False) + "\n")
    return paths + [directory / "collapse_table.md", directory / "collapse_table.json"]
