"""Figures of one user model's lag profiles (``gradflow profile --out``): every layer's profile and the end-to-end
input sensitivity against lag."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradflow.flow.networks import ModelProfile
from gradflow.plot.style import (
    CATEGORICAL,
    LINESTYLES,
    WRT_LABELS,
    figure_size,
    in_house_style,
    new_axes,
    save_figure,
)


def _label(layer) -> str:
    return f"layer {layer.index} {layer.direction} ({layer.cell.upper()}, H = {layer.hidden_size})"


@in_house_style
def plot_model_profile(profile: ModelProfile, ax=None):
    """Each layer's lag profile (a categorical colour and line style per layer) and the input sensitivity (grey,
    dotted, lags from 0) against lag, on ``ax`` or a new one-column figure.

    Non-finite values (an exactly vanished Jacobian, ``-inf``) are left blank and said in the legend.

    Returns:
      The Axes.
    """
    ax = new_axes(ax, size=figure_size(1, 0.85))
    for i, layer in enumerate(profile.layers):
        p = layer.log10_norm_h
        blank = int((~np.isfinite(p)).sum())
        note = f"; {blank} lags non-finite" if blank else ""
        n = i % len(CATEGORICAL)
        ax.plot(np.arange(1, len(p) + 1), np.where(np.isfinite(p), p, np.nan), color=CATEGORICAL[n],
                linestyle=LINESTYLES[n], label=_label(layer) + note)
    q = profile.input_sensitivity
    if q is not None:
        ax.plot(np.arange(len(q)), np.where(np.isfinite(q), q, np.nan), color="0.45", linestyle=":",
                label=r"input: $\log_{10}\|\partial h^{top}_T/\partial x_{T-k}\|_F$")
    ax.set_xlabel("lag $k$ (steps)")
    ax.set_ylabel(WRT_LABELS[profile.wrt].replace("h_t", "h_{T-k}").replace("s_t", "s_{T-k}"))
    ax.legend(loc="best", fontsize=7)
    ax.grid(alpha=0.3, lw=0.5)
    return ax


def write_model_profile_figures(profile: ModelProfile, directory: str | Path) -> list[Path]:
    """``DIR/lag_profiles.pdf`` and ``.png`` of :func:`plot_model_profile`; returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return save_figure(plot_model_profile(profile).figure, directory / "lag_profiles")
