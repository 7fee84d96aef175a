"""Every figure of a finished store, chosen by the kind of job that wrote it."""

from __future__ import annotations

from pathlib import Path

from gradflow.plot.collapse import plot_collapse_all
from gradflow.plot.profiles import plot_all
from gradflow.sweep.results import Results

#: The figures of each kind of store (the ``kind`` attribute written by :func:`gradflow.sweep.store.open_store`).
FIGURES_BY_KIND = {"profiles": plot_all, "collapse": plot_collapse_all}


def store_kind(results: Results) -> str:
    """The job kind of a store; a store written before gradflow 0.2 has none and is told by its variables."""
    kind = results.attrs.get("kind")
    if kind is None:
        kind = "collapse" if "collapsed" in results.data else "profiles"
    if kind not in FIGURES_BY_KIND:
        raise ValueError(f"a store of kind {kind!r} has no figures; known kinds: {sorted(FIGURES_BY_KIND)}")
    return kind


def plot_results(results: Results, directory: str | Path) -> list[Path]:
    """Draw every figure of ``results`` into ``directory``; returns the files written."""
    return FIGURES_BY_KIND[store_kind(results)](results, directory)
