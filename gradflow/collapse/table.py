"""The collapse map's numbers, read from a collapse store: one definition of where collapse (and learning
failure) lies and begins, used by the onset table and the figure alike.

The definition (:func:`collapse_regions`):

- A *cell* of the map is one pair of values of the two map axes (``[analysis].map``, else the first two swept
  settings other than the seed); it holds every variant with those values (every seed, every value of the other
  swept settings). Its *collapsed fraction* is the fraction of those variants whose verdict is ``collapsed``.
- A cell is *collapsed* (hatched in the figure) when its collapsed fraction is at least 1/2; learning *failed*
  in a cell when its learned fraction is at most 1/2.
- Cells meet at *edges*: midpoints between neighbouring grid values, geometric midpoints on log-spaced axes
  (more than two positive values spanning a decade, which the figure draws on a log scale).
- Along a numeric axis, collapse grows in the direction in which the number of collapsed cells grows (over the
  whole map). Walking each row of the map that way, the *onset* is the edge between the last not-collapsed
  cell and the first collapsed one at the first switch: "before the range" (``-inf``/``+inf``, drawn at the
  map's outer edge) if the row's first cell is collapsed, none (NaN) if none is. A row that is not monotone
  (it leaves the region again after its onset, and may collapse once more) is marked ``recovers``; the table
  lists every row's collapsed intervals, so the onset, where collapse first begins, hides nothing.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from gradflow.collapse.metrics import best_threshold, onset
from gradflow.sweep.results import Results, cell_edges, is_log_spaced, is_numeric

#: A cell is collapsed when at least this fraction of its variants collapsed (and failed to learn when at most
#: this fraction learned).
HALF = 0.5


def mean_over_others(results: Results, name: str, keep: tuple[str, ...]) -> np.ndarray:
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


def map_edges(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """The edges of the map's cells around sorted ``values`` and whether the axis is log-spaced: the figures'
    :func:`~gradflow.sweep.results.cell_edges`, with categories at 0..n-1.

    Example:
      >>> edges, log = map_edges(np.array([1.0, 10.0, 100.0]))
      >>> edges.tolist(), log
      ([0.31622776601683794, 3.1622776601683795, 31.622776601683793, 316.22776601683796], True)
    """
    v = np.asarray(values, dtype=np.float64) if is_numeric(values) else np.arange(np.size(values), dtype=np.float64)
    return cell_edges(v), is_log_spaced(values)


@dataclasses.dataclass(frozen=True)
class Onsets:
    """Where a region begins along one map axis, for every value of the other (see the module docstring).

    Attributes:
      along: the axis walked along.
      per: the other axis; one entry below per value of it.
      direction: ``+1`` if the region lies at larger values of ``along``, ``-1`` at smaller ones.
      onset: the edge where the region first begins (``-inf``/``+inf`` by direction: before the range; NaN: never).
      recovers: whether the row leaves the region again after its onset.
      intervals: per row, the region's runs as ``(low edge, high edge)`` in increasing ``along``.
    """

    along: str
    per: str
    direction: int
    onset: np.ndarray
    recovers: np.ndarray
    intervals: tuple[tuple[tuple[float, float], ...], ...]


@dataclasses.dataclass(frozen=True)
class CollapseRegions:
    """The collapse map computed once: what the figure hatches and draws, and what the table lists.

    Attributes:
      axes: the map's axes (two, or one if only one setting is swept), x first.
      coords: each map axis's values.
      edges: each map axis's cell edges (:func:`map_edges`).
      log: whether each map axis is log-spaced.
      collapsed_fraction, learned_fraction: per cell (shape: the map axes' sizes), over the cell's variants.
      collapsed: ``collapsed_fraction >= 1/2``: the hatched cells.
      failed: ``learned_fraction <= 1/2``: where learning failed.
      onsets, failure_onsets: :class:`Onsets` of ``collapsed`` and ``failed`` along each numeric map axis (two
        axes needed), keyed by that axis.
      averaged: ``(name, size)`` of every dimension outside the map with more than one value (averaged over).
      fixed: ``(name, value)`` of every dimension outside the map with one value.
    """

    axes: tuple[str, ...]
    coords: tuple[np.ndarray, ...]
    edges: tuple[np.ndarray, ...]
    log: tuple[bool, ...]
    collapsed_fraction: np.ndarray
    learned_fraction: np.ndarray
    collapsed: np.ndarray
    failed: np.ndarray
    onsets: dict[str, Onsets]
    failure_onsets: dict[str, Onsets]
    averaged: tuple[tuple[str, int], ...]
    fixed: tuple[tuple[str, object], ...]

    @property
    def variants_per_cell(self) -> int:
        return int(np.prod([n for _, n in self.averaged], dtype=np.int64))

    def reduction_note(self, sep: str = "; ") -> str:
        """The reduction performed, in words: ``"mean over 4 seeds and 2 values of learning rate; hidden size = 8"``.

        Only dimensions with more than one value are named as averaged over; one-valued ones are stated as fixed.
        The parts are joined by ``sep``.
        """
        over = [f"{n} seeds" if d == "seed" else f"{n} values of {_words(d)}" for d, n in self.averaged]
        parts = [f"mean over {' and '.join(over)}"] if over else []
        parts += [f"{_words(d)} = {_fmt(_plain_value(v))}" for d, v in self.fixed]
        return sep.join(parts)


def _words(dim: str) -> str:
    """A setting's name as written in a caption: ``learning_rate`` -> ``learning rate``."""
    return dim.replace("_", " ")


def collapse_regions(results: Results) -> CollapseRegions:
    """The collapsed and failed cells of the map of ``results`` and where they begin (the module docstring's definition)."""
    keep = map_axes(results)
    coords = tuple(np.asarray(results.coords[d]) for d in keep)
    edges, log = zip(*(map_edges(c) for c in coords)) if keep else ((), ())
    collapsed_fraction = mean_over_others(results, "collapsed", keep)
    learned_fraction = mean_over_others(results, "learned", keep)
    collapsed, failed = collapsed_fraction >= HALF, learned_fraction <= HALF
    onsets, failure_onsets = {}, {}
    if len(keep) == 2:
        for axis in (0, 1):
            if is_numeric(coords[axis]):
                onsets[keep[axis]] = _onsets(collapsed, keep, axis, coords[axis], edges[axis])
                failure_onsets[keep[axis]] = _onsets(failed, keep, axis, coords[axis], edges[axis])
    others = [d for d in results.dims if d not in keep]
    averaged = tuple((d, int(results.coords[d].size)) for d in others if results.coords[d].size > 1)
    fixed = tuple((d, results.coords[d][0]) for d in others if results.coords[d].size == 1)
    return CollapseRegions(keep, coords, tuple(edges), tuple(log), collapsed_fraction, learned_fraction, collapsed,
                           failed, onsets, failure_onsets, averaged, fixed)


def _onsets(region: np.ndarray, keep: tuple[str, ...], axis: int, coords: np.ndarray, edges: np.ndarray) -> Onsets:
    values, direction = onset(region, coords, axis=axis, edges=edges)
    rows = np.moveaxis(region, axis, -1)
    recovers, intervals = [], []
    for row in rows:
        walked = row if direction > 0 else row[::-1]
        first = np.flatnonzero(walked)
        recovers.append(bool(first.size) and not walked[first[0]:].all())
        intervals.append(tuple((float(edges[a]), float(edges[b])) for a, b in _runs(row)))
    return Onsets(keep[axis], keep[1 - axis], direction, values, np.array(recovers), tuple(intervals))


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in ``row``."""
    padded = np.concatenate([[False], np.asarray(row, bool), [False]])
    change = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(change[::2].tolist(), change[1::2].tolist()))


def collapse_table(results: Results, regions: CollapseRegions | None = None) -> dict:
    """Where collapse (and, separately, learning failure) begins along each numeric map axis, and the
    initial-norm thresholds that best separate the outcomes.

    ``regions`` (:func:`collapse_regions` of ``results``, computed if not given) is the figure's definition: the
    onsets here are the edges its lines are drawn on.
    """
    regions = collapse_regions(results) if regions is None else regions
    table = {"map_axes": list(regions.axes), "collapsed_fraction": float(np.mean(results.data["collapsed"])),
             "learned_fraction": float(np.mean(results.data["learned"])),
             "definition": DEFINITION, "onsets": {}, "failure_onsets": {}}
    for key, found in (("onsets", regions.onsets), ("failure_onsets", regions.failure_onsets)):
        for axis, o in found.items():
            table[key][axis] = {
                "direction": f"at {'larger' if o.direction > 0 else 'smaller'} values",
                "per": o.per,
                "values": [_plain_value(v) for v in regions.coords[regions.axes.index(o.per)]],
                "onset": [_plain(v) for v in o.onset],
                "recovers": o.recovers.tolist(),
                "intervals": [[list(run) for run in row] for row in o.intervals],
            }
    initial = results.data["initial_log10_norm_at_lag"]
    for key, outcome in (("initial_norm_threshold", results.data["collapsed"]),
                         ("initial_norm_threshold_learning", ~results.data["learned"])):
        threshold = best_threshold(initial, outcome)
        table[key] = {k: _plain(v) if isinstance(v, float) else v for k, v in threshold.items()}
    return table


#: The definition in one paragraph, as the table and the README state it.
DEFINITION = ("A cell (one pair of map values) is collapsed when at least half of its variants (seeds and other "
              "settings) collapsed; these cells are hatched. Along an axis, the onset is the cell edge (midpoint, "
              "geometric on log-spaced axes) where a row first passes from a not-collapsed to a collapsed cell, "
              "walking the way collapse grows; rows that recover after it are marked and every row's collapsed cells are listed. Learning failure: "
              "the same with at most half of the variants learned.")


def _plain_value(value):
    return value.item() if hasattr(value, "item") else value


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


def _intervals(runs: list) -> str:
    return ", ".join(f"{_fmt(low)} to {_fmt(high)}" for low, high in runs) or "nowhere"


def table_markdown(table: dict) -> str:
    lines = ["# Collapse map", "",
             (f"Variants collapsed (predict nearly the same value for every input): "
              f"{100 * table['collapsed_fraction']:.1f}%. Variants that learned (beat the best constant predictor): "
              f"{100 * table['learned_fraction']:.1f}%."), "",
             table.get("definition", DEFINITION), ""]
    for key, what, region in (("onsets", "Onset of collapse", "collapsed"),
                              ("failure_onsets", "Onset of learning failure", "failed")):
        for axis, entry in table[key].items():
            lines += [f"## {what} along {axis} ({entry['direction']})", "",
                      f"| {entry['per']} | onset in {axis} | {region} cells span ({axis}) |", "|---|---|---|"]
            for v, o, again, runs in zip(entry["values"], entry["onset"], entry["recovers"], entry["intervals"]):
                mark = " (then recovers)" if again else ""
                lines.append(f"| {_fmt(v)} | {_fmt(o)}{mark} | {_intervals(runs)} |")
            lines.append("")
    lines += ["## Does the initial gradient flow predict the outcome?", "",
              "Best single threshold on the initial log10 ||dh_T/dh_(T-lag)|| at the task's lag:", ""]
    lines.append(_threshold_line(table["initial_norm_threshold"], "collapsed"))
    lines.append(_threshold_line(table["initial_norm_threshold_learning"], "not learned"))
    return "\n".join(lines) + "\n"
