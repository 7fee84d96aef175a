"""A two-column, four-panel figure for a paper, composed from stored results with ``ax=``, as a user would.

    python scripts/paper_figure.py [--out results/paper_figure] [--profiles results/default]
                                   [--collapse results/collapse_map]

(a) lag profiles of the default sweep (``gradflow run``) at weight scale 1, (b) its horizon map, (c) its decay-rate
map, (d) the collapse map of ``scripts/collapse_map.py``. Nothing is recomputed: every panel is drawn from a store by the same
function that draws gradflow's own figures, onto an Axes of this figure. Writes ``OUT.pdf`` and ``OUT.png``
(deterministic bytes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from gradflow.plot.collapse import plot_collapse_map
from gradflow.plot.profiles import plot_decay_map, plot_horizon_map, plot_lag_profiles
from gradflow.plot.style import paper_style, save_figure
from gradflow.sweep.results import Results

ROOT = Path(__file__).resolve().parents[1]


def paper_figure(profiles: Results, collapse: Results):
    """The figure: (a) lag profiles wrt h at the middle weight scale, (b) the horizon map and (c) the decay-rate map
    wrt h, (d) the collapse map; each title, led by its panel letter, aligned left."""
    with paper_style(columns=2, aspect=0.8):
        fig, axes = plt.subplots(2, 2, layout="constrained")
        plot_lag_profiles(profiles, wrt="h", panel=profiles.coords["weight_scale"].size // 2, ax=axes[0, 0])
        plot_horizon_map(profiles, wrt="h", ax=axes[0, 1])
        plot_decay_map(profiles, wrt="h", ax=axes[1, 0])
        plot_collapse_map(collapse, ax=axes[1, 1])
        for letter, ax in zip("abcd", axes.flat):
            ax.set_title(f"({letter}) {ax.get_title()}", loc="left")   # the letter leads the title
            ax.set_title("")
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "paper_figure"), help="output path without suffix")
    parser.add_argument("--profiles", default=str(ROOT / "results" / "default"), help="a lag-profile sweep's directory")
    parser.add_argument("--collapse", default=str(ROOT / "results" / "collapse_map"), help="a collapse map's directory")
    args = parser.parse_args(argv)
    fig = paper_figure(Results.load(args.profiles), Results.load(args.collapse))
    for path in save_figure(fig, Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
