"""Figures of a lag-profile sweep, drawn from its stored :class:`gradflow.sweep.results.Results`, never recomputed:
lag profiles against lag and horizon maps over the swept settings."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.patches import Patch
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from gradflow.plot.style import (
    CMAP,
    STYLE,
    WRT_LABELS,
    axis_label,
    cell_edges,
    is_log_axis,
    positions,
    save_figure,
)
from gradflow.sweep.results import Results, is_numeric

def _reduce(results: Results, name: str, keep: tuple[str, ...]) -> tuple[np.ndarray, str]:
    """``name`` with every dim outside ``keep`` removed: median over ``seed``, first value otherwise.

    Returns the array (dims in ``keep`` order, then lag if any) and a note of what was fixed.
    """
    array = results.data[name]
    dims = list(results.dims)
    notes = []
    for dim in [d for d in results.dims if d not in keep]:
        axis = dims.index(dim)
        if dim == "seed":
            with warnings.catch_warnings():  # all-NaN slices (padding past a shorter T) stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                array = np.nanmedian(array, axis=axis)
            notes.append(f"median over {results.coords[dim].size} seeds")
        else:
            array = np.take(array, 0, axis=axis)
            notes.append(f"{dim} = {results.coords[dim][0]}")
        dims.pop(axis)
    order = [dims.index(d) for d in keep] + list(range(len(dims), array.ndim))
    return np.transpose(array, order), ", ".join(notes)


def _plot_dims(results: Results) -> tuple[str, ...]:
    """Up to two swept dims to draw against: those with more than one value, seeds last."""
    dims = [d for d in results.dims if results.coords[d].size > 1 and d != "seed"]
    return tuple(dims[:2]) if dims else tuple(results.dims[:1])


def plot_lag_profiles(results: Results, path_stem: str | Path, *, max_panels: int = 3) -> list[Path]:
    """Lag profiles, log10 norm against lag: one curve per value of the first swept setting.

    One row per ``wrt`` mode; panels across a few values of the second swept setting.
    """
    wrts = [n.removeprefix("log10_norm_") for n in results.data if n.startswith("log10_norm_")]
    keep = _plot_dims(results)
    if not keep:
        return _plot_single_profile(results, wrts, Path(path_stem))
    colour_dim = keep[0]
    colours = results.coords[colour_dim]
    panel_dim = keep[1] if len(keep) > 1 else None
    panel_index = (
        np.unique(np.linspace(0, results.coords[panel_dim].size - 1, max_panels).round().astype(int)) if panel_dim else [None]
    )
    lags = results.coords["lag"]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(wrts), len(panel_index), figsize=(2.4 * len(panel_index) + 1.0, 2.2 * len(wrts)),
            squeeze=False, sharex=True, constrained_layout=True,
        )
        numeric = is_numeric(colours)
        norm = Normalize(float(colours.min()), float(colours.max())) if numeric else Normalize(0, len(colours) - 1)
        cmap = plt.get_cmap(CMAP)
        for row, wrt in enumerate(wrts):
            profiles, note = _reduce(results, f"log10_norm_{wrt}", keep)
            errors = _reduce(results, f"stderr_log10_norm_{wrt}", keep)[0] if f"stderr_log10_norm_{wrt}" in results.data else None
            for col, p in enumerate(panel_index):
                ax = axes[row, col]
                block = profiles if p is None else profiles[:, p]
                for k, curve in enumerate(block):
                    colour = cmap(norm(colours[k] if numeric else k))
                    ax.plot(lags, curve, color=colour, lw=1.0)
                    if errors is not None:
                        band = (errors if p is None else errors[:, p])[k]
                        ax.fill_between(lags, curve - 2 * band, curve + 2 * band, color=colour, alpha=0.2, lw=0)
                if row == 0 and panel_dim:
                    value = results.coords[panel_dim][p]
                    text = f"{value:.3g}" if is_numeric(results.coords[panel_dim]) else str(value)
                    ax.set_title(f"{axis_label(panel_dim)} = {text}")
                if row == len(wrts) - 1:
                    ax.set_xlabel("lag $T - t$ (steps)")
                if col == 0:
                    ax.set_ylabel(profile_label(results, wrt))
                ax.grid(alpha=0.3, lw=0.5)
        sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        bar = fig.colorbar(sm, ax=axes, shrink=0.9)
        bar.set_label(axis_label(colour_dim))
        if not numeric:
            bar.set_ticks(range(len(colours)), labels=[str(c) for c in colours])
        title = "Lag profiles" + (f" ({note})" if note else "") + _method_note(results, wrts)
        if title != "Lag profiles":
            fig.suptitle(title, fontsize=9)
        return save_figure(fig, Path(path_stem))


def profile_label(results: Results, wrt: str) -> str:
    """The axis label of a ``wrt`` profile, in the norm the store's method measured (Frobenius or spectral)."""
    label = WRT_LABELS.get(wrt, wrt)
    spectral = results.attrs.get("config", {}).get("analysis", {}).get("method") == "spectral"
    return label.replace("\\|_F", "\\|_2") if spectral else label


def _method_note(results: Results, wrts: list[str]) -> str:
    """What the curves are when not the exact Frobenius profile: the method, and the bands' meaning."""
    analysis = results.attrs.get("config", {}).get("analysis", {})
    method = analysis.get("method", "exact")
    if method == "probes":
        banded = any(f"stderr_log10_norm_{w}" in results.data for w in wrts)
        return f"\nestimated from {analysis.get('probes', '?')} random probes" + (", bands ±2 s.e." if banded else "")
    return "\nspectral norm" if method == "spectral" else ""


def _plot_single_profile(results: Results, wrts: list[str], path_stem: Path) -> list[Path]:
    """The lag profiles of a run without swept settings: one variant, one curve per ``wrt``."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.0, 2.8), constrained_layout=True)
        cmap = plt.get_cmap(CMAP)
        for k, wrt in enumerate(wrts):
            lags, curve, colour = results.coords["lag"], results.data[f"log10_norm_{wrt}"], cmap(0.15 + 0.7 * k)
            ax.plot(lags, curve, color=colour, lw=1.0, label=profile_label(results, wrt))
            if f"stderr_log10_norm_{wrt}" in results.data:
                band = 2 * results.data[f"stderr_log10_norm_{wrt}"]
                ax.fill_between(lags, curve - band, curve + band, color=colour, alpha=0.2, lw=0)
        if (note := _method_note(results, wrts).strip()):
            ax.set_title(note, fontsize=9)
        ax.set_xlabel("lag $T - t$ (steps)")
        ax.set_ylabel("$\\log_{10}$ norm")
        ax.legend(frameon=False)
        ax.grid(alpha=0.3, lw=0.5)
        return save_figure(fig, path_stem)


def plot_horizon_map(results: Results, path_stem: str | Path, *, wrt: str = "h") -> list[Path]:
    """Heatmap of the horizon (first lag below ``10^-k``) over the first two swept settings.

    Variants whose profile never falls that low within T are drawn in light grey, non-finite ones
    (overflow) in dark red; with one swept setting it is a line plot, never-falling variants marked at T.
    """
    name = f"horizon_{wrt}"
    keep = _plot_dims(results)
    horizon, note = _reduce(results, name, keep)
    decades = results.attrs.get("config", {}).get("analysis", {}).get("decades")
    threshold = f"$10^{{-{decades:g}}}$" if isinstance(decades, (int, float)) else "$10^{-k}$"
    T = int(results.coords["lag"][-1])
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 3.2), constrained_layout=True)
        finite = horizon[np.isfinite(horizon)]
        vmin, vmax = (max(1.0, float(finite.min())), float(max(finite.max(), 2.0))) if finite.size else (1.0, float(T))
        cmap = plt.get_cmap(CMAP).with_extremes(over="0.85", bad="#8b0000")
        if len(keep) == 1:
            x = positions(ax, results.coords[keep[0]], "x")
            ax.plot(x, np.where(np.isfinite(horizon), horizon, np.nan), "o-", color=plt.get_cmap(CMAP)(0.2))
            never = np.isposinf(horizon)
            if never.any():
                ax.plot(x[never], np.full(never.sum(), T), "^", color="0.6", label=f"not within T = {T}")
                ax.legend(frameon=False)
            ax.set_xlabel(axis_label(keep[0]))
            ax.set_ylabel(f"horizon (first lag with norm < {threshold})")
            ax.set_yscale("log")
        else:
            x, y = (positions(ax, results.coords[d], axis) for d, axis in zip(keep, "xy"))
            img = np.ma.masked_invalid(np.where(np.isposinf(horizon), vmax * 10, horizon)).T
            mesh = ax.pcolormesh(
                cell_edges(x), cell_edges(y), img, cmap=cmap, norm=LogNorm(vmin, vmax) if vmax / vmin > 5 else Normalize(vmin, vmax),
                shading="flat",
            )
            for values, axis in ((x, ax.xaxis), (y, ax.yaxis)):
                if is_log_axis(values):
                    (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
                    axis.set_major_formatter(FormatStrFormatter("%g"))
                    axis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(axis_label(keep[0]))
            ax.set_ylabel(axis_label(keep[1]))
            bar = fig.colorbar(mesh, ax=ax, extend="max")
            bar.set_label(f"horizon: first lag with norm < {threshold}")
            handles = [Patch(color="0.85", label=f"not within T = {T}")]
            if np.isnan(horizon).any():
                handles.append(Patch(color="#8b0000", label="non-finite profile"))
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
        title = f"Gradient horizon, wrt {wrt}"
        ax.set_title(f"{title}\n({note})" if note else title)
        return save_figure(fig, Path(path_stem))


def plot_lyapunov(results: Results, path_stem: str | Path, *, max_curves: int = 5) -> list[Path]:
    """The leading Lyapunov exponent against the first swept setting, with ±2 standard-error bars.

    One curve per value of the second swept setting (up to ``max_curves``, evenly chosen); other
    settings as in :func:`plot_lag_profiles` (median over seeds, first value otherwise).
    """
    keep = _plot_dims(results)
    lead, note = _reduce(results, "lyapunov", keep)
    error = _reduce(results, "stderr_lyapunov", keep)[0]
    lead, error = lead[..., 0], error[..., 0]  # the exponent axis is last: its first entry is the largest
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 3.0), constrained_layout=True)
        if not keep or lead.ndim == 0:
            ax.errorbar([0], [float(lead)], yerr=[2 * float(error)], fmt="o", color=plt.get_cmap(CMAP)(0.2), capsize=3)
            ax.set_xticks([])
        else:
            x = positions(ax, results.coords[keep[0]], "x")
            if lead.ndim == 1:
                lead, error, labels = lead[:, None], error[:, None], [None]
            else:
                pick = np.unique(np.linspace(0, lead.shape[1] - 1, max_curves).round().astype(int))
                lead, error = lead[:, pick], error[:, pick]
                values = results.coords[keep[1]][pick]
                labels = [f"{axis_label(keep[1])} = {v:.3g}" if is_numeric(values) else str(v) for v in values]
            colours = plt.get_cmap(CMAP)(np.linspace(0.0, 0.85, lead.shape[1]))
            for j, label in enumerate(labels):
                ax.errorbar(x, lead[:, j], yerr=2 * error[:, j], fmt="o-", ms=3, lw=1.0, capsize=2,
                            color=colours[j], label=label)
            if is_log_axis(x):
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(axis_label(keep[0]))
            if labels[0] is not None:
                ax.legend(frameon=False, fontsize=7)
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_ylabel(r"leading Lyapunov exponent $\lambda_1$ (nats per step)")
        ax.set_title("Leading Lyapunov exponent, bars ±2 s.e." + (f"\n({note})" if note else ""), fontsize=9)
        ax.grid(alpha=0.3, lw=0.5)
        return save_figure(fig, Path(path_stem))


def plot_all(results: Results, directory: str | Path) -> list[Path]:
    """Every standard figure of a lag-profile run into ``directory``; returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = plot_lag_profiles(results, directory / "lag_profiles")
    for name in results.data:
        if name.startswith("horizon_") and results.dims:  # one variant has no map: its horizon is in the summary
            wrt = name.removeprefix("horizon_")
            paths += plot_horizon_map(results, directory / f"horizon_{wrt}", wrt=wrt)
    if "lyapunov" in results.data:
        paths += plot_lyapunov(results, directory / "lyapunov")
    return paths
