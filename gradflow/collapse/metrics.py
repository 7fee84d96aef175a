r"""Output collapse: did a trained model learn, or does it predict (nearly) the same value for every input?

Three measurements on held-out data, each against what a constant predictor would do:

- ``spread_ratio``: standard deviation of the predictions over validation inputs (probabilities for
  classifiers, values for regression; averaged over outputs) divided by that of the targets.
- ``loss_ratio``: validation loss divided by the loss of the best constant predictor on the same
  targets (cross-entropy: the label entropy; squared error: the target variance).
- ``accuracy_margin``: validation accuracy minus the majority-class rate (NaN for regression).

Verdicts, with :data:`THRESHOLDS` (overridable): ``collapsed`` if ``spread_ratio < spread``: the
outputs barely move with the input; ``learned`` if ``loss_ratio < loss``: it beats every constant.
A model can be neither (its outputs vary, but not usefully).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Default verdict thresholds: collapsed below ``spread`` (spread ratio), learned below ``loss`` (loss ratio).
THRESHOLDS = {"spread": 0.1, "loss": 0.9}


def constant_loss(kind: str, y: np.ndarray) -> float:
    """Loss of the best constant predictor on targets ``y``."""
    y = np.asarray(y, np.float64)
    if kind == "binary":
        p = np.clip(y.mean(), 1e-12, 1 - 1e-12)
        return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)))
    if kind == "multiclass":
        p = np.clip(y.mean(0), 1e-12, 1)
        return float(-(p * np.log(p)).sum())
    return float(np.mean(y.var(0)))


def majority_rate(kind: str, y: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class (NaN for regression)."""
    y = np.asarray(y, np.float64)
    if kind == "binary":
        return float(max(y.mean(), 1 - y.mean()))
    if kind == "multiclass":
        return float(y.mean(0).max())
    return float("nan")


def target_spread(y: np.ndarray) -> float:
    """Standard deviation of the targets over inputs, averaged over outputs."""
    y = np.asarray(y, np.float64)
    return float(np.mean(y.reshape(len(y), -1).std(0)))


def collapse_metrics(
    kind: str, y_val: np.ndarray, val_loss, val_accuracy, val_spread, *, thresholds: Mapping[str, float] = THRESHOLDS
) -> dict[str, np.ndarray]:
    """Spread ratio, loss ratio, accuracy margin and the two verdicts, elementwise over variants.

    Example:
      >>> y = np.array([0.0, 1.0, 1.0, 0.0])
      >>> m = collapse_metrics("binary", y, val_loss=[0.69, 0.05], val_accuracy=[0.5, 1.0], val_spread=[0.0, 0.48])
      >>> m["collapsed"].tolist(), m["learned"].tolist()
      ([True, False], [False, True])
    """
    thresholds = {**THRESHOLDS, **thresholds}
    spread = np.asarray(val_spread, np.float64) / max(target_spread(y_val), 1e-12)
    loss = np.asarray(val_loss, np.float64) / max(constant_loss(kind, y_val), 1e-12)
    margin = np.asarray(val_accuracy, np.float64) - majority_rate(kind, y_val)
    return {
        "spread_ratio": spread,
        "loss_ratio": loss,
        "accuracy_margin": margin,
        "collapsed": spread < thresholds["spread"],
        "learned": loss < thresholds["loss"],
    }


def onset(
    collapsed: np.ndarray, coords: Sequence[float], axis: int = 0, *, edges: Sequence[float] | None = None
) -> tuple[np.ndarray, int]:
    """Where collapse begins along ``axis`` of a boolean map, for every position on the other axes.

    The direction is the one in which the collapsed fraction grows (``+1``: collapse at large values,
    ``-1``: at small ones). Walking that way, the onset is the boundary between the last learned and
    the first collapsed value of the first switch; ``-inf``/``+inf`` (by direction: before the range) where
    the first value collapsed, whatever follows; NaN where none did.

    Args:
      collapsed: boolean map.
      coords: the values along ``axis``.
      axis: the axis walked along.
      edges: the cells' edges along ``axis`` (one more than ``coords``): the boundary between values ``i`` and
        ``i + 1`` is ``edges[i + 1]``. Default: the midpoints between neighbouring values.

    Returns:
      (onsets with ``axis`` removed, direction).

    Example:
      >>> onset(np.array([[False, True, True], [False, False, True]]), [1.0, 10.0, 100.0], axis=1)[0].tolist()
      [5.5, 55.0]
      >>> onset(np.array([[False, True, True]]), [1.0, 10.0, 100.0], axis=1, edges=[0.3, 3.0, 30.0, 300.0])[0].tolist()
      [3.0]
    """
    c = np.moveaxis(np.asarray(collapsed, bool), axis, -1)
    x = np.asarray(coords, np.float64)
    if x.shape != (c.shape[-1],):
        raise ValueError(f"coords must have one value per entry of axis {axis} ({c.shape[-1]}); got {x.shape}")
    if edges is None:
        inner = 0.5 * (x[1:] + x[:-1])
    else:
        e = np.asarray(edges, np.float64)
        if e.shape != (x.size + 1,):
            raise ValueError(f"edges must have one value more than coords ({x.size + 1}); got {e.shape}")
        inner = e[1:-1]
    pos = np.arange(c.shape[-1])
    slope = np.cov(pos, c.mean(tuple(range(c.ndim - 1))))[0, 1] if c.shape[-1] > 1 else 0.0
    direction = 1 if slope >= 0 else -1
    if direction < 0:
        c, inner = c[..., ::-1], inner[::-1]
    out = np.full(c.shape[:-1], np.nan)
    for index in np.ndindex(*c.shape[:-1]):
        row = c[index]
        switches = np.flatnonzero(~row[:-1] & row[1:])  # learned at i, collapsed at i + 1
        if row[0]:  # collapsed from the first value on: the onset lies before the range
            out[index] = -np.inf * direction
        elif switches.size:
            out[index] = inner[int(switches[0])]
    return out, direction


def best_threshold(values: np.ndarray, collapsed: np.ndarray) -> dict[str, float]:
    """The threshold on ``values`` (say, the initial lag-profile value) that best separates collapsed variants.

    Tries ``collapsed = values < t`` and ``values > t`` at every midpoint; returns the threshold, the
    side, and its balanced accuracy (mean of the two classes' recall; 0.5 is chance). Non-finite values
    are ordered as they compare (``-inf`` lowest); NaN values are left out.
    """
    v = np.asarray(values, np.float64).ravel()
    y = np.asarray(collapsed, bool).ravel()
    keep = ~np.isnan(v)
    v, y = v[keep], y[keep]
    if v.size == 0 or y.all() or not y.any():
        return {"threshold": float("nan"), "side": "none", "balanced_accuracy": float("nan"), "n": int(v.size)}
    order = np.unique(v)
    lower, upper = order[:-1], order[1:]
    with np.errstate(invalid="ignore"):  # midpoints next to an infinity: one step inside the finite value
        mid = np.where(np.isneginf(lower), upper - 1.0, np.where(np.isposinf(upper), lower + 1.0, (lower + upper) / 2))
    candidates = np.concatenate([[-np.inf], mid, [np.inf]])
    best = (-1.0, np.nan, "below")
    for t in candidates:
        for side, predicted in (("below", v < t), ("above", v > t)):
            score = 0.5 * (np.mean(predicted[y]) + np.mean(~predicted[~y]))
            if score > best[0]:
                best = (score, float(t), side)
    return {"threshold": best[1], "side": best[2], "balanced_accuracy": float(best[0]), "n": int(v.size)}
