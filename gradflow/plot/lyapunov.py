"""Convergence of finite-time Lyapunov exponents (:func:`gradflow.flow.lyapunov.finite_time_exponents`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gradflow.plot.style import CMAP, STYLE, save_figure


def plot_finite_time_exponents(exponents, window: int, ax=None):
    """Per-window exponents (faint points) and their running average (lines) against steps.

    Args:
      exponents: (W, k) per-window exponents, natural log per step (``running=False``).
      window: steps per window.
      ax: matplotlib Axes to draw on; a new figure in the house style if None.

    Returns:
      The Axes.
    """
    e = np.asarray(exponents, dtype=float)
    if e.ndim != 2 or e.shape[0] < 1:
        raise ValueError(f"exponents must be (W, k) with W >= 1; got shape {e.shape}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r} must be an integer >= 1")
    if ax is None:
        with plt.rc_context(STYLE):
            _, ax = plt.subplots(figsize=(4.5, 3.0))
    W, k = e.shape
    steps = window * np.arange(1, W + 1)
    running = np.cumsum(e, axis=0) / np.arange(1, W + 1)[:, None]
    colours = plt.get_cmap(CMAP)(np.linspace(0.0, 0.9, k))
    for i in range(k):
        ax.plot(steps, e[:, i], ".", color=colours[i], alpha=0.25, markersize=3)
        ax.plot(steps, running[:, i], "-", color=colours[i], label=rf"$\lambda_{{{i + 1}}}$ = {running[-1, i]:.4g}")
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.set_xlabel("steps")
    ax.set_ylabel("exponent (ln per step)")
    ax.set_title(f"finite-time exponents, window {window}: points per window, lines running mean")
    if k <= 8:
        ax.legend(loc="best")
    return ax


def save_finite_time_exponents(exponents, window: int, path_stem: str | Path) -> list[Path]:
    """:func:`plot_finite_time_exponents` in a new figure saved as PDF and PNG at ``path_stem``."""
    with plt.rc_context(STYLE):
        ax = plot_finite_time_exponents(exponents, window)
        return save_figure(ax.figure, Path(path_stem))
