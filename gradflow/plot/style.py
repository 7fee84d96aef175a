"""The house style of gradflow's figures and the axis helpers every figure shares.

PDF and PNG, TrueType fonts embedded, colour-blind-safe colour maps (cividis), log scales where a
quantity spans decades, deterministic output (no timestamps in the files).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gradflow.sweep.results import is_numeric

STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "svg.hashsalt": "gradflow",
}
CMAP = "cividis"
LABELS = {
    "forget_bias": "forget-gate bias $b_f$",
    "weight_scale": "weight scale (gain)",
    "seed": "seed",
    "scheme": "initialisation scheme",
    "hidden_size": "hidden size $H$",
    "seq_len": "sequence length $T$",
    "activation": "cell activation",
}
WRT_LABELS = {"h": r"$\log_{10}\,\|\partial h_T/\partial h_t\|_F$", "state": r"$\log_{10}\,\|\partial s_T/\partial s_t\|_F$, $s=(h,c)$"}


def save_figure(fig, path_stem: Path) -> list[Path]:
    paths = [path_stem.with_suffix(".pdf"), path_stem.with_suffix(".png")]
    fig.savefig(paths[0], metadata={"CreationDate": None, "ModDate": None})
    fig.savefig(paths[1], metadata={"Software": None})
    plt.close(fig)
    return paths


def axis_label(dim: str) -> str:
    return LABELS.get(dim, dim.replace("_", " "))


def is_log_axis(values: np.ndarray) -> bool:
    """More than two positive numbers spanning at least a decade."""
    if not is_numeric(values) or np.size(values) <= 2:
        return False
    v = np.asarray(values, dtype=float)
    return bool(np.all(v > 0) and v.max() / v.min() >= 10)


def positions(ax, values: np.ndarray, axis: str) -> np.ndarray:
    """Numeric coordinates as they are; categories as 0..n-1 with their names as tick labels."""
    if is_numeric(values):
        return values
    positions = np.arange(values.size, dtype=float)
    (ax.set_xticks if axis == "x" else ax.set_yticks)(positions, labels=[str(v) for v in values])
    return positions


def cell_edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around sorted coordinate values (geometric midpoints on log-spaced axes)."""
    v = np.asarray(values, dtype=float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5]) if v[0] <= 0.5 else np.array([v[0] / 1.5, v[0] * 1.5])
    if is_log_axis(v):
        mid = np.sqrt(v[1:] * v[:-1])
        return np.concatenate([[v[0] ** 2 / mid[0]], mid, [v[-1] ** 2 / mid[-1]]])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
