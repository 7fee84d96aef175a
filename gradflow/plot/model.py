"""Figures of one user model's lag profiles (``gradflow profile --out``): every layer's profile and the end-to-end
input sensitivity against lag."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gradflow.flow.networks import ModelProfile
from gradflow.plot.style import STYLE, WRT_LABELS, save_figure


def _label(layer) -> str:
    return f"layer {layer.index} {layer.direction} ({layer.cell.upper()}, H = {layer.hidden_size})"


def plot_model_profile(profile: ModelProfile, ax=None):
    """Draw each layer's lag profile (solid; a backward layer dashed) and the input sensitivity (dotted, lags from
    0) on ``ax``; without ``ax``, on a new figure, which is returned (else ``ax.figure``).

    Non-finite values (an exactly vanished Jacobian, ``-inf``) are left blank and said in the legend.
    """
    with plt.rc_context(STYLE):
        if ax is None:
            _, ax = plt.subplots(figsize=(4.8, 3.2))
        colours = plt.get_cmap("tab10")
        for i, layer in enumerate(profile.layers):
            p = layer.log10_norm_h
            blank = int((~np.isfinite(p)).sum())
            note = f"; {blank} lags non-finite" if blank else ""
            ax.plot(np.arange(1, len(p) + 1), np.where(np.isfinite(p), p, np.nan), color=colours(i % 10),
                    linestyle="--" if layer.direction == "backward" else "-", label=_label(layer) + note)
        q = profile.input_sensitivity
        if q is not None:
            ax.plot(np.arange(len(q)), np.where(np.isfinite(q), q, np.nan), color="0.25", linestyle=":",
                    label=r"input: $\log_{10}\|\partial h^{top}_T/\partial x_{T-k}\|_F$")
        ax.set_xlabel("lag $k$ (steps)")
        ax.set_ylabel(WRT_LABELS[profile.wrt].replace("h_t", "h_{T-k}").replace("s_t", "s_{T-k}"))
        ax.legend(loc="best", frameon=False)
        ax.grid(alpha=0.3)
    return ax.figure


def write_model_profile_figures(profile: ModelProfile, directory: str | Path) -> list[Path]:
    """``DIR/lag_profiles.pdf`` and ``.png`` of :func:`plot_model_profile`; returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        return save_figure(plot_model_profile(profile), directory / "lag_profiles")
