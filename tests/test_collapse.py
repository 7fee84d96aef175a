"""Collapse verdicts against constant and perfect predictors; onsets and thresholds on synthetic maps."""

import math

import numpy as np
import pytest

from gradflow.collapse.metrics import (
    best_threshold,
    collapse_metrics,
    constant_loss,
    majority_rate,
    onset,
    target_spread,
)


def test_constant_predictor_references_are_analytic():
    y = np.array([1.0, 0.0, 1.0, 1.0])
    assert constant_loss("binary", y) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), rel=1e-12)
    assert majority_rate("binary", y) == 0.75 and target_spread(y) == pytest.approx(math.sqrt(0.75 * 0.25))
    onehot = np.eye(3)[[0, 1, 2, 2]]
    assert constant_loss("multiclass", onehot) == pytest.approx(-(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5)))
    assert majority_rate("multiclass", onehot) == 0.5
    r = np.array([[1.0, 0.0], [3.0, 4.0]])
    assert constant_loss("regression", r) == pytest.approx((1.0 + 4.0) / 2) and math.isnan(majority_rate("regression", r))


def test_a_constant_predictor_is_collapsed_and_a_perfect_one_is_not():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(float)
    p = y.mean()
    # constant: predicts the base rate everywhere (loss = label entropy, accuracy = majority, spread 0)
    const = collapse_metrics("binary", y, constant_loss("binary", y), majority_rate("binary", y), 0.0)
    assert const["collapsed"] and not const["learned"]
    assert const["loss_ratio"] == pytest.approx(1.0) and const["accuracy_margin"] == pytest.approx(0.0)
    # perfect: predictions are the labels
    perfect = collapse_metrics("binary", y, 1e-4, 1.0, y.std())
    assert not perfect["collapsed"] and perfect["learned"] and perfect["spread_ratio"] == pytest.approx(1.0)
    assert perfect["accuracy_margin"] == pytest.approx(1 - max(p, 1 - p))
    # thresholds are overridable
    assert not collapse_metrics("binary", y, 0.69, 0.5, 0.05 * y.std(), thresholds={"spread": 0.01})["collapsed"]


def test_onset_is_found_on_a_map_whose_boundary_is_known():
    fb = np.linspace(-3, 3, 13)  # step 0.5
    T = np.array([10, 50, 100, 200])
    boundary = np.array([-2.25, -0.75, 0.75, 2.25])  # collapse for forget bias below this, per T
    collapsed = fb[:, None] < boundary[None, :]
    onsets, direction = onset(collapsed, fb, axis=0)
    assert direction == -1  # collapse grows towards small forget bias
    np.testing.assert_allclose(onsets, boundary)  # boundaries lie midway between grid values
    # along T: collapse begins at large T; at fb = 0.0 (index 6), rows switch between T = 50 and 100
    along_T, dir_T = onset(collapsed, T, axis=1)
    assert dir_T == 1 and along_T[6] == 75.0
    assert np.isnan(along_T[-1])  # fb = 3: never collapses
    assert along_T[0] == -np.inf  # fb = -3: collapsed everywhere
    with pytest.raises(ValueError, match="one value per entry of axis 0"):
        onset(collapsed, T, axis=0)


def test_best_threshold_recovers_a_known_separator():
    rng = np.random.default_rng(1)
    values = rng.uniform(-20, 0, 400)
    collapsed = values < -12.3
    out = best_threshold(values, collapsed)
    assert out["side"] == "below" and out["balanced_accuracy"] == 1.0
    assert -12.3 - 0.5 < out["threshold"] < -12.3 + 0.5
    assert np.all((values < out["threshold"]) == collapsed)
    noisy = collapsed ^ (rng.random(400) < 0.1)
    assert 0.8 < best_threshold(values, noisy)["balanced_accuracy"] < 1.0
    with_inf = best_threshold(np.array([-np.inf, -np.inf, -1.0, -2.0, np.nan]), np.array([True, True, False, False, True]))
    assert with_inf["balanced_accuracy"] == 1.0 and with_inf["n"] == 4
    assert math.isnan(best_threshold(values, np.zeros(400, bool))["threshold"])


def test_onset_at_given_edges_and_rows_that_begin_collapsed():
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    edges = np.array([0.3, 3.0, 30.0, 300.0, 3000.0])  # geometric midpoints (about), as a log-scaled map draws them
    rows = np.array([[False, True, True, True],     # one switch: at the edge between 1 and 10
                     [False, False, True, False],   # collapses, then recovers: the first switch
                     [True, False, True, True],     # begins collapsed: before the range, not the later switch
                     [False, False, False, False]])
    onsets, direction = onset(rows, x, axis=1, edges=edges)
    assert direction == 1
    np.testing.assert_array_equal(onsets, [3.0, 30.0, -np.inf, np.nan])
    np.testing.assert_array_equal(onset(rows, x, axis=1)[0], [5.5, 55.0, -np.inf, np.nan])  # default: midpoints
    reversed_onsets, reversed_direction = onset(rows[:, ::-1], x, axis=1, edges=edges)
    assert reversed_direction == -1
    np.testing.assert_array_equal(reversed_onsets, [300.0, 30.0, np.inf, np.nan])
    with pytest.raises(ValueError, match="edges must have one value more than coords"):
        onset(rows, x, axis=1, edges=edges[:-1])
