"""Figures of a lag-profile sweep, drawn from its stored :class:`gradflow.sweep.results.Results`, never recomputed:
lag profiles against lag, horizon maps over the swept settings and the leading Lyapunov exponent.

One-Axes functions (``ax=`` a panel of your figure, or None for a new one-column figure):
:func:`plot_lag_profiles`, :func:`plot_horizon_map`, :func:`plot_lyapunov`. :func:`lag_profiles_figure` composes
the lag-profile panels with one shared colour key; :func:`plot_all` writes every figure of a run.

Settings that are not drawn are reduced as the titles say: seeds by their median ("median over 3 seeds"), any other
setting with several values fixed at its first ("hidden size $H$ = 8, first of 3"); a setting with one value is
not mentioned (nothing was reduced over it).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.patches import Patch
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter, NullLocator

from gradflow.plot.style import (
    CATEGORICAL,
    DIVERGING,
    LINESTYLES,
    MARKERS,
    SEQUENTIAL,
    STYLE,
    WRT_LABELS,
    axis_label,
    cell_edges,
    figure_size,
    in_house_style,
    is_log_axis,
    log_colorbar,
    new_axes,
    positions,
    save_figure,
)
from gradflow.sweep.results import Results, is_numeric

_LAG_LABEL = "lag $T - t$ (steps)"
_NEVER = "0.85"  # horizon map: the profile never fell below the threshold within T
_NONFINITE = "#8b0000"  # horizon map: the profile overflowed


def _value_text(value) -> str:
    """A setting's value as printed: numbers to 3 significant digits with a typographic minus."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return f"{value:.3g}".replace("-", "\N{MINUS SIGN}")
    return str(value)


def _setting_text(dim: str, value) -> str:
    """``"name = value"``, broken after the ``=`` when too long for a panel's title."""
    name, text = axis_label(dim), _value_text(value)
    return f"{name} = {text}" if len(name) + len(text) <= 26 else f"{name} =\n{text}"


def _reduce(results: Results, name: str, keep: tuple[str, ...]) -> tuple[np.ndarray, str]:
    """``name`` with every dim outside ``keep`` removed: median over ``seed``, first value otherwise.

    Returns the array (dims in ``keep`` order, then lag if any) and a note naming only what was done over a dim of
    more than one value: "median over 3 seeds", "hidden size $H$ = 8, first of 3". A dim of one value is dropped
    silently (nothing was reduced).
    """
    array = results.data[name]
    dims = list(results.dims)
    notes = []
    for dim in [d for d in results.dims if d not in keep]:
        axis = dims.index(dim)
        size = results.coords[dim].size
        if size == 1:
            array = np.take(array, 0, axis=axis)
        elif dim == "seed":
            with warnings.catch_warnings():  # all-NaN slices (padding past a shorter T) stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                array = np.nanmedian(array, axis=axis)
            notes.append(f"median over {size} seeds")
        else:
            array = np.take(array, 0, axis=axis)
            notes.append(f"{axis_label(dim)} = {_value_text(results.coords[dim][0])}, first of {size}")
        dims.pop(axis)
    order = [dims.index(d) for d in keep] + list(range(len(dims), array.ndim))
    return np.transpose(array, order), "; ".join(notes)


def _plot_dims(results: Results) -> tuple[str, ...]:
    """Up to two swept dims to draw against: those with more than one value, seeds last."""
    dims = [d for d in results.dims if results.coords[d].size > 1 and d != "seed"]
    return tuple(dims[:2]) if dims else tuple(results.dims[:1])


def _wrts(results: Results) -> list[str]:
    return [n.removeprefix("log10_norm_") for n in results.data if n.startswith("log10_norm_")]


def _panel_indices(results: Results, max_panels: int) -> list[int | None]:
    """Up to ``max_panels`` evenly spread value indices of the second swept setting; ``[None]`` without one."""
    keep = _plot_dims(results)
    if len(keep) < 2:
        return [None]
    size = results.coords[keep[1]].size
    return [int(i) for i in np.unique(np.linspace(0, size - 1, max_panels).round().astype(int))]


def _colour_key(values: np.ndarray):
    """How the curves of a setting are told apart: ``(colour_of_index, norm or None)``.

    Ordered numbers: :data:`SEQUENTIAL` under a (log, when they span a decade) norm, for a colour bar. Categories:
    :data:`CATEGORICAL`, for a legend.
    """
    if is_numeric(values):
        low, high = float(np.min(values)), float(np.max(values))
        if is_log_axis(values):
            norm = LogNorm(low, high)
        else:
            norm = Normalize(low, high) if high > low else Normalize(low - 0.5, high + 0.5)
        cmap = plt.get_cmap(SEQUENTIAL)
        return (lambda k: cmap(norm(float(values[k])))), norm
    return (lambda k: CATEGORICAL[k % len(CATEGORICAL)]), None


def _colour_bar(fig, norm, values: np.ndarray, dim: str, axes):
    """One colour bar for a numeric colour setting beside ``axes``: its values as ticks when there are few (8 or
    fewer), else ticks at decades (log norm) or matplotlib's own."""
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=plt.get_cmap(SEQUENTIAL))
    bar = fig.colorbar(mappable, ax=axes)
    bar.set_label(axis_label(dim))
    if values.size <= 8:
        bar.set_ticks([float(v) for v in values], labels=[_value_text(v) for v in values])
        bar.ax.yaxis.set_minor_locator(NullLocator())
    elif isinstance(norm, LogNorm):
        _log_ticks_plain(bar.ax.yaxis, values)
    return bar


@in_house_style
def plot_lag_profiles(results: Results, *, wrt: str = "h", panel: int | None = None, ax=None, key: bool = True,
                      note: bool = True):
    """One panel of lag profiles: log10 norm wrt ``wrt`` against lag, one curve per value of the first swept setting.

    Args:
      results: a lag-profile store.
      wrt: which profile (``"h"`` or ``"state"``).
      panel: the value index of the second swept setting drawn (its value is the title); None when there is none
        (with one, None picks its first value).
      ax: the Axes to draw on; None for a new one-column figure.
      key: draw this panel's colour key (a colour bar for a numeric setting, a legend for categories).
      note: add what was reduced and how the curves were measured to the title.

    Probe estimates are drawn with bands of ±2 standard errors (``stderr_log10_norm_{wrt}``). A store without swept
    settings draws its single profile.

    Returns:
      The Axes.
    """
    ax = new_axes(ax)
    name = f"log10_norm_{wrt}"
    if name not in results.data:
        raise ValueError(f"wrt={wrt!r}: the store holds no {name!r}; it holds profiles wrt {_wrts(results)}")
    keep = _plot_dims(results)
    lags = results.coords["lag"]
    profiles, reduced = _reduce(results, name, keep)
    stderr = f"stderr_{name}"
    errors = _reduce(results, stderr, keep)[0] if stderr in results.data else None
    title = []
    if not keep:
        colour = CATEGORICAL[_wrts(results).index(wrt) % len(CATEGORICAL)]
        ax.plot(lags, profiles, color=colour, lw=1.0, label=profile_label(results, wrt))
        if errors is not None:
            ax.fill_between(lags, profiles - 2 * errors, profiles + 2 * errors, color=colour, alpha=0.2, lw=0)
        if key:
            ax.legend()
    else:
        if len(keep) > 1:
            p = 0 if panel is None else panel
            size = results.coords[keep[1]].size
            if not 0 <= p < size:
                raise ValueError(f"panel={panel!r}: {keep[1]} has {size} values (indices 0..{size - 1})")
            profiles, errors = profiles[:, p], None if errors is None else errors[:, p]
            title.append(_setting_text(keep[1], results.coords[keep[1]][p]))
        elif panel is not None:
            raise ValueError(f"panel={panel!r}: the store has no second swept setting to pick a panel of")
        values = results.coords[keep[0]]
        colour_of, norm = _colour_key(values)
        for k, curve in enumerate(profiles):
            style = {} if norm is not None else {"ls": LINESTYLES[k % len(LINESTYLES)]}
            ax.plot(lags, curve, color=colour_of(k), lw=1.0, label=_value_text(values[k]), **style)
            if errors is not None:
                ax.fill_between(lags, curve - 2 * errors[k], curve + 2 * errors[k], color=colour_of(k), alpha=0.2,
                                lw=0)
        if key and norm is not None:
            _colour_bar(ax.figure, norm, values, keep[0], ax)
        elif key:
            ax.legend(title=axis_label(keep[0]), fontsize=7, title_fontsize=7)
    if note:
        title += [t for t in (reduced, _method_note(results, [wrt]).strip()) if t]
    if title:
        ax.set_title("\n".join(title))
    ax.set_xlabel(_LAG_LABEL)
    ax.set_ylabel(profile_label(results, wrt) if keep else "$\\log_{10}$ norm")
    ax.grid(alpha=0.3, lw=0.5)
    return ax


def lag_profiles_figure(results: Results, *, max_panels: int = 3):
    """Lag profiles, one row per ``wrt`` mode, panels across up to ``max_panels`` values of the second swept
    setting, and one colour key shared by all panels (a colour bar for a numeric setting, a legend for categories).

    What was reduced (and how probes were measured) is the figure's title. Returns the Figure.
    """
    wrts = _wrts(results)
    keep = _plot_dims(results)
    if not keep:  # one variant: its profiles wrt each mode on one Axes
        ax = new_axes(None)
        for wrt in wrts:
            plot_lag_profiles(results, wrt=wrt, ax=ax, key=False)
        ax.legend()
        return ax.figure
    panels = _panel_indices(results, max_panels)
    width, _ = figure_size(1 if len(panels) == 1 else 2)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(wrts), len(panels), figsize=(width, 2.1 * len(wrts) + 0.3), squeeze=False,
                                 sharex=True, layout="constrained")
        for row, wrt in enumerate(wrts):
            for col, p in enumerate(panels):
                ax = plot_lag_profiles(results, wrt=wrt, panel=p, ax=axes[row, col], key=False, note=False)
                if row and p is not None:
                    ax.set_title("")
                if row < len(wrts) - 1:
                    ax.set_xlabel("")
                if col:
                    ax.set_ylabel("")
        values = results.coords[keep[0]]
        _, norm = _colour_key(values)
        if norm is not None:
            _colour_bar(fig, norm, values, keep[0], axes)
        else:
            handles, labels = axes[0, 0].get_legend_handles_labels()
            fig.legend(handles, labels, title=axis_label(keep[0]), loc="outside right upper", fontsize=7,
                       title_fontsize=7)
        reduced = _reduce(results, f"log10_norm_{wrts[0]}", keep)[1]
        title = ("Lag profiles" + (f" ({reduced})" if reduced else "") + _method_note(results, wrts))
        if title != "Lag profiles":
            fig.suptitle(title, fontsize=9)
    return fig


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


def _log_ticks_plain(axis, values=None) -> None:
    """Plain-number ticks on a log ``axis``: at decades, and at 2 and 5 times them where ``values`` span less than
    two decades (so a short log axis is never left with one tick)."""
    if values is not None:
        v = np.asarray(values, dtype=float)
        narrow = np.log10(v.max() / v.min()) < 2
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def _settings_mesh(ax, results: Results, keep: tuple[str, str], values: np.ndarray, cmap, norm):
    """``values`` (dims ``keep``) as cells over the two swept settings, NaN masked (the colour map's "bad"), log
    axes where the settings are log-spaced, both axes labelled; returns the mesh."""
    x, y = (positions(ax, results.coords[d], axis) for d, axis in zip(keep, "xy"))
    mesh = ax.pcolormesh(cell_edges(x), cell_edges(y), np.ma.masked_invalid(values).T, cmap=cmap, norm=norm,
                         shading="flat")
    for coords, axis in ((x, ax.xaxis), (y, ax.yaxis)):
        if is_log_axis(coords):
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
            _log_ticks_plain(axis, coords)
    ax.set_xlabel(axis_label(keep[0]))
    ax.set_ylabel(axis_label(keep[1]))
    return mesh


@in_house_style
def plot_horizon_map(results: Results, *, wrt: str = "h", ax=None):
    """The horizon (first lag whose norm is below ``10^-k``, in steps) over the first two swept settings.

    A map with a colour bar in steps (log-scaled, ticks at decades, when the horizons span more than a factor 5);
    variants whose profile never falls that low within T are light grey, non-finite ones (overflow) dark red, both
    in the legend. With one swept setting it is a line, never-falling variants marked at T.

    Returns:
      The Axes (``ax``, or that of a new one-column figure).
    """
    name = f"horizon_{wrt}"
    if name not in results.data:
        raise ValueError(f"wrt={wrt!r}: the store holds no {name!r}")
    ax = new_axes(ax, size=figure_size(1, 0.9))
    keep = _plot_dims(results)
    horizon, note = _reduce(results, name, keep)
    decades = results.attrs.get("config", {}).get("analysis", {}).get("decades")
    threshold = f"$10^{{-{decades:g}}}$" if isinstance(decades, (int, float)) else "$10^{-k}$"
    label = f"horizon (steps): first lag\nwith norm < {threshold}"
    T = int(results.coords["lag"][-1])
    finite = horizon[np.isfinite(horizon)]
    vmin, vmax = (max(1.0, float(finite.min())), float(max(finite.max(), 2.0))) if finite.size else (1.0, float(T))
    if len(keep) == 1:
        x = positions(ax, results.coords[keep[0]], "x")
        ax.plot(x, np.where(np.isfinite(horizon), horizon, np.nan), "o-", color=CATEGORICAL[0], ms=3)
        never = np.isposinf(horizon)
        if never.any():
            ax.plot(x[never], np.full(never.sum(), T), "^", color="0.6", label=f"not within T = {T}")
            ax.legend()
        ax.set_xlabel(axis_label(keep[0]))
        ax.set_ylabel(label)
        ax.set_yscale("log")
        drawn = np.concatenate([finite, [T] if never.any() else []])
        _log_ticks_plain(ax.yaxis, drawn if drawn.size else [1.0, T])
        if is_log_axis(np.asarray(x)):
            ax.set_xscale("log")
            _log_ticks_plain(ax.xaxis, x)
        ax.grid(alpha=0.3, lw=0.5)
    else:
        cmap = plt.get_cmap(SEQUENTIAL).with_extremes(over=_NEVER, bad=_NONFINITE)
        logged = vmax / vmin > 5
        norm = LogNorm(vmin, vmax) if logged else Normalize(vmin, vmax)
        mesh = _settings_mesh(ax, results, keep, np.where(np.isposinf(horizon), vmax * 10, horizon), cmap, norm)
        if logged:
            log_colorbar(mesh, ax, label)
        else:
            ax.figure.colorbar(mesh, ax=ax).set_label(label)
        handles = [Patch(color=_NEVER, label=f"not within T = {T}")]
        if np.isnan(horizon).any():
            handles.append(Patch(color=_NONFINITE, label="non-finite profile"))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=7)
    title = f"Gradient horizon, wrt {wrt}"
    ax.set_title(f"{title}\n({note})" if note else title)
    return ax


#: Per-variant quantities :func:`plot_setting_map` draws: (colour-bar label with unit, centred at 0).
MAP_QUANTITIES = {
    "decay_rate": ("decay rate (decades per step)", True),
    "saturation": ("fraction saturated (steps x units)", False),
}


def _map_quantity(name: str) -> tuple[str, bool]:
    for prefix, (label, centred) in MAP_QUANTITIES.items():
        if name.startswith(prefix + "_"):
            return label, centred
    raise ValueError(f"name={name!r}: expected a stored decay_rate_* or saturation_* variable")


@in_house_style
def plot_setting_map(results: Results, name: str, *, ax=None, title: str | None = None, colorbar: bool = True):
    """A stored per-variant scalar (``decay_rate_{wrt}``, ``saturation_{gate}``) over the first two swept settings.

    Decay rates (the least-squares slope of the lag profile, decades per step) use the diverging map centred at
    0 (vanishing one way, exploding the other); saturation fractions the sequential map on [0, 1]. Non-finite
    cells (a profile that is exactly 0 or overflowed) are dark red and named in the legend. With one swept
    setting it is a line. ``colorbar=False`` leaves the colour bar to the caller (panels that share one).

    Returns:
      The Axes (``ax``, or that of a new one-column figure).
    """
    if name not in results.data:
        raise ValueError(f"name={name!r}: the store holds no such variable; it holds {sorted(results.data)}")
    label, centred = _map_quantity(name)
    ax = new_axes(ax, size=figure_size(1, 0.9))
    keep = _plot_dims(results)
    values, note = _reduce(results, name, keep)
    finite = values[np.isfinite(values)]
    if centred:
        bound = float(np.max(np.abs(finite))) if finite.size else 1.0
        norm, cmap = Normalize(-(bound or 1.0), bound or 1.0), DIVERGING
    else:
        norm, cmap = Normalize(0.0, 1.0), SEQUENTIAL
    if len(keep) == 1:
        x = positions(ax, results.coords[keep[0]], "x")
        ax.plot(x, np.where(np.isfinite(values), values, np.nan), "o-", color=CATEGORICAL[0], ms=3)
        ax.set_xlabel(axis_label(keep[0]))
        ax.set_ylabel(label)
        if centred:
            ax.axhline(0.0, color="0.6", lw=0.6)
        if is_log_axis(np.asarray(x)):
            ax.set_xscale("log")
            _log_ticks_plain(ax.xaxis, x)
        ax.grid(alpha=0.3, lw=0.5)
    else:
        mesh = _settings_mesh(ax, results, keep, values, plt.get_cmap(cmap).with_extremes(bad=_NONFINITE), norm)
        if colorbar:
            ax.figure.colorbar(mesh, ax=ax).set_label(label)
        if not np.isfinite(values).all():
            ax.legend(handles=[Patch(color=_NONFINITE, label="non-finite")], loc="upper center",
                      bbox_to_anchor=(0.5, -0.2), fontsize=7)
    title = title or name.replace("_", " ")
    ax.set_title(f"{title}\n({note})" if note else title)
    return ax


def plot_decay_map(results: Results, *, wrt: str = "h", ax=None):
    """The decay rate of the ``wrt`` lag profile (decades per step) over the swept settings: :func:`plot_setting_map`."""
    return plot_setting_map(results, f"decay_rate_{wrt}", ax=ax, title=f"Decay rate of the lag profile, wrt {wrt}")


def saturation_figure(results: Results):
    """One panel per gate: the fraction of steps x units each gate spends saturated, over the swept settings (a
    figure two columns wide, one colour bar on [0, 1])."""
    gates = [n for n in results.data if n.startswith("saturation_")]
    if not gates:
        raise ValueError("the store holds no saturation_* variables")
    with plt.rc_context(STYLE):
        columns = min(2, len(gates))
        rows = -(-len(gates) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=figure_size(2, 0.4 * rows), layout="constrained",
                                 squeeze=False)
        for ax, name in zip(axes.flat, gates):
            plot_setting_map(results, name, ax=ax, title=f"{name.removeprefix('saturation_')} gate saturated",
                             colorbar=False)
        for ax in axes.flat[len(gates):]:
            ax.set_visible(False)
        if len(_plot_dims(results)) == 2:
            mappable = plt.cm.ScalarMappable(norm=Normalize(0.0, 1.0), cmap=plt.get_cmap(SEQUENTIAL))
            fig.colorbar(mappable, ax=axes.ravel().tolist()).set_label(MAP_QUANTITIES["saturation"][0])
    return fig


@in_house_style
def plot_lyapunov(results: Results, *, ax=None, max_curves: int = 5):
    """The leading Lyapunov exponent (nats per step) against the first swept setting, with ±2 standard-error bars.

    One curve per value of the second swept setting (up to ``max_curves``, evenly chosen; categorical colours,
    markers and line styles, with a legend); other settings reduced as in :func:`plot_lag_profiles`.

    Returns:
      The Axes (``ax``, or that of a new one-column figure).
    """
    ax = new_axes(ax)
    keep = _plot_dims(results)
    lead, note = _reduce(results, "lyapunov", keep)
    error = _reduce(results, "stderr_lyapunov", keep)[0]
    lead, error = lead[..., 0], error[..., 0]  # the exponent axis is last: its first entry is the largest
    if not keep or lead.ndim == 0:
        ax.errorbar([0], [float(lead)], yerr=[2 * float(error)], fmt="o", color=CATEGORICAL[0], capsize=3)
        ax.set_xticks([])
    else:
        x = positions(ax, results.coords[keep[0]], "x")
        if lead.ndim == 1:
            lead, error, labels = lead[:, None], error[:, None], [None]
        else:
            pick = np.unique(np.linspace(0, lead.shape[1] - 1, max_curves).round().astype(int))
            lead, error = lead[:, pick], error[:, pick]
            labels = [_value_text(v) for v in results.coords[keep[1]][pick]]
        for j, label in enumerate(labels):
            n = j % len(CATEGORICAL)
            ax.errorbar(x, lead[:, j], yerr=2 * error[:, j], marker=MARKERS[n], ls=LINESTYLES[n], ms=3, lw=1.0,
                        capsize=2, color=CATEGORICAL[n], label=label)
        if is_log_axis(np.asarray(x)):
            ax.set_xscale("log")
            _log_ticks_plain(ax.xaxis, x)
        ax.set_xlabel(axis_label(keep[0]))
        if labels[0] is not None:
            ax.legend(title=axis_label(keep[1]), fontsize=7, title_fontsize=7)
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_ylabel("$\\lambda_1$ (nats per step)")
    ax.set_title("Leading Lyapunov exponent, bars ±2 s.e." + (f"\n({note})" if note else ""))
    ax.grid(alpha=0.3, lw=0.5)
    return ax


def plot_all(results: Results, directory: str | Path) -> list[Path]:
    """Every standard figure of a lag-profile run into ``directory``: ``lag_profiles``, ``horizon_{wrt}``,
    ``decay_{wrt}``, ``saturation`` and ``lyapunov`` (when measured), each PDF and PNG; returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = save_figure(lag_profiles_figure(results), directory / "lag_profiles")
    for name in results.data:
        if name.startswith("horizon_") and results.dims:  # one variant has no map: its horizon is in the summary
            wrt = name.removeprefix("horizon_")
            paths += save_figure(plot_horizon_map(results, wrt=wrt).figure, directory / f"horizon_{wrt}")
        if name.startswith("decay_rate_") and results.dims:
            wrt = name.removeprefix("decay_rate_")
            paths += save_figure(plot_decay_map(results, wrt=wrt).figure, directory / f"decay_{wrt}")
    if any(name.startswith("saturation_") for name in results.data) and results.dims:
        paths += save_figure(saturation_figure(results), directory / "saturation")
    if "lyapunov" in results.data:
        paths += save_figure(plot_lyapunov(results).figure, directory / "lyapunov")
    return paths
