"""The collapse map's numbers, read from a collapse store: the map axes, where collapse and learning
failure begin along each, and the initial-norm thresholds that best separate the outcomes."""

from __future__ import annotations

import warnings

import numpy as np

from gradflow.collapse.metrics import best_threshold, onset
from gradflow.sweep.results import Results, is_numeric


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


def collapse_table(results: Results) -> dict:
    """Where collapse (and, separately, learning failure) begins along each map axis, and the
    initial-norm thresholds that best separate the outcomes."""
    keep = map_axes(results)
    table = {"map_axes": list(keep), "collapsed_fraction": float(np.mean(results.data["collapsed"])),
             "learned_fraction": float(np.mean(results.data["learned"])), "onsets": {}, "failure_onsets": {}}
    outcomes = (("onsets", "collapsed", False), ("failure_onsets", "learned", True))
    for key, name, negate in outcomes:
        fraction = mean_over_others(results, name, keep)
        region = (fraction <= 0.5) if negate else (fraction >= 0.5)
        for axis, other in ((0, 1), (1, 0)):
            if len(keep) < 2 or not is_numeric(results.coords[keep[axis]]):
                continue
            onsets, direction = onset(region, results.coords[keep[axis]], axis=axis)
            table[key][keep[axis]] = {
                "direction": f"at {'larger' if direction > 0 else 'smaller'} values",
                "per": keep[other],
                "values": [v.item() if hasattr(v, "item") else v for v in results.coords[keep[other]]],
                "onset": [_plain(v) for v in onsets],
            }
    initial = results.data["initial_log10_norm_at_lag"]
    for key, outcome in (("initial_norm_threshold", results.data["collapsed"]),
                         ("initial_norm_threshold_learning", ~results.data["learned"])):
        threshold = best_threshold(initial, outcome)
        table[key] = {k: _plain(v) if isinstance(v, float) else v for k, v in threshold.items()}
    return table


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


def table_markdown(table: dict) -> str:
    lines = ["# Collapse map", "",
             f"Variants collapsed (predict nearly the same value for every input): {100 * table['collapsed_fraction']:.1f}%. "
             f"Variants that learned (beat the best constant predictor): {100 * table['learned_fraction']:.1f}%.", ""]
    for key, what in (("onsets", "Onset of collapse"), ("failure_onsets", "Onset of learning failure")):
        for axis, entry in table[key].items():
            lines += [f"## {what} along {axis} ({entry['direction']})", "",
                      f"| {entry['per']} | onset in {axis} |", "|---|---|"]
            lines += [f"| {_fmt(v)} | {_fmt(o)} |" for v, o in zip(entry["values"], entry["onset"])]
            lines.append("")
    lines += ["## Does the initial gradient flow predict the outcome?", "",
              "Best single threshold on the initial log10 ||dh_T/dh_(T-lag)|| at the task's lag:", ""]
    lines.append(_threshold_line(table["initial_norm_threshold"], "collapsed"))
    lines.append(_threshold_line(table["initial_norm_threshold_learning"], "not learned"))
    return "\n".join(lines) + "\n"
