"""Convergence of finite-time Lyapunov exponents (:func:`gradflow.flow.lyapunov.finite_time_exponents`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradflow.plot.style import CATEGORICAL, LINESTYLES, in_house_style, new_axes, save_figure


@in_house_style
def plot_finite_time_exponents(exponents, window: int, ax=None):
    """Per-window exponents (faint points) and their running mean (lines) against steps, one colour and line style
    per exponent (:data:`gradflow.plot.style.CATEGORICAL`), the final running mean in the legend.

    Args:
      exponents: (W, k) per-window exponents, natural log per step (``running=False``).
      window: steps per window.
      ax: matplotlib Axes to draw on; a new one-column figure in the house style if None.

    Returns:
      The Axes.
    """
    e = np.asarray(exponents, dtype=float)
    if e.ndim != 2 or e.shape[0] < 1:
        raise ValueError(f"exponents must be (W, k) with W >= 1; got shape {e.shape}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r} must be an integer >= 1")
    ax = new_axes(ax)
    W, k = e.shape
    steps = window * np.arange(1, W + 1)
    running = np.cumsum(e, axis=0) / np.arange(1, W + 1)[:, None]
    for i in range(k):
        colour, style = CATEGORICAL[i % len(CATEGORICAL)], LINESTYLES[i % len(LINESTYLES)]
        ax.plot(steps, e[:, i], ".", color=colour, alpha=0.3, markersize=3)
        ax.plot(steps, running[:, i], color=colour, ls=style, label=rf"$\lambda_{{{i + 1}}}$ = {running[-1, i]:.3g}")
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.set_xlabel("steps")
    ax.set_ylabel("exponent (nats per step)")
    ax.set_title(f"window = {window} steps: points per window,\nlines the running mean")
    if k <= len(CATEGORICAL):
        ax.legend(loc="best", fontsize=7)
    ax.grid(alpha=0.3, lw=0.5)
    return ax


def save_finite_time_exponents(exponents, window: int, path_stem: str | Path) -> list[Path]:
    """:func:`plot_finite_time_exponents` in a new figure saved as PDF and PNG at ``path_stem``."""
    return save_figure(plot_finite_time_exponents(exponents, window).figure, Path(path_stem))
