"""The diagnosis report's figures: natural ranges (a collapsed model is a spike), the targets beside the
predictions, categorical remedies with legible names, panels on a caller's Axes, and the report's files.

Diagnoses are built by hand from their evidence (no model, no compile)."""

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pytest

from gradflow.diagnose.checks import THRESHOLDS, Diagnosis, Evidence, GateStatistics, RemedyOutcome
from gradflow.plot.diagnosis import (
    BINS,
    DIRECT_LABELS,
    gate_saturation_figure,
    plot_diagnosis,
    plot_gate_histogram,
    plot_lag_profile,
    plot_predictions,
    plot_remedy_curves,
    saturated_fraction,
)
from gradflow.plot.style import CATEGORICAL

N, T, H = 64, 12, 4


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _gates(rng, *, gru=False) -> GateStatistics:
    names = ("reset", "update", "candidate") if gru else ("input", "forget", "cell", "output")
    values = {g: (np.tanh(rng.normal(size=(N, T, H))) if g in ("cell", "candidate")
                  else 1 / (1 + np.exp(-rng.normal(size=(N, T, H))))) for g in names}
    return GateStatistics(per_step={g: np.zeros(T) for g in names}, values=values, max_abs_h=np.ones(H))


def _diagnosis(predictions, targets, output, *, remedies=None, layers=("0 forward",)) -> Diagnosis:
    rng = np.random.default_rng(0)
    profiles = {label: -(0.5 + i) * np.arange(1, T + 1.0) for i, label in enumerate(layers)}
    evidence = Evidence(lag_profile=profiles[layers[-1]], gates={label: _gates(rng) for label in layers},
                        predictions=np.asarray(predictions), layer_profiles=profiles, targets=targets, output=output,
                        activations=dict.fromkeys(layers, "tanh"))
    return Diagnosis(True, {}, [], dict(THRESHOLDS), evidence, remedies)


def _patches(ax, label):
    return [p for p in ax.patches if p.get_label() == label]


def _bar_heights(ax, label) -> np.ndarray:
    """The counts of the step histogram named ``label`` (its :data:`BINS` bins): the outline's heights."""
    (patch,) = _patches(ax, label)
    return patch.get_xy()[1 : 2 * BINS + 1 : 2, 1]


def test_a_collapsed_sigmoid_model_is_drawn_on_0_to_1_with_its_labels():
    """Defect: the histogram was auto-scaled to the predictions' spread, so 0.50..0.51 filled the axis."""
    rng = np.random.default_rng(1)
    pred = 0.5 + 0.01 * rng.uniform(size=N)  # collapsed: every prediction within 0.01
    labels = (rng.uniform(size=N) < 0.4).astype(float)
    ax = plot_predictions(_diagnosis(pred, labels, "sigmoid"))
    assert ax.get_xlim() == (0.0, 1.0)
    assert _patches(ax, f"predictions ({N} inputs)") and _patches(ax, "targets")
    predicted = _bar_heights(ax, f"predictions ({N} inputs)")
    assert np.count_nonzero(predicted) == 1 and predicted.sum() == N  # one spike
    targets = _bar_heights(ax, "targets")
    assert targets[0] == np.sum(labels == 0) and targets[-1] == np.sum(labels == 1)  # the same bins
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"predictions ({N} inputs)", "targets"]
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 7
    (target,) = _patches(ax, "targets")
    assert target.get_hatch() and not target.get_fill()  # outlined and hatched: apart in grey-scale too


def test_a_collapsed_regression_model_is_drawn_on_the_targets_range():
    rng = np.random.default_rng(2)
    targets = 10 + 3 * rng.normal(size=N)
    pred = targets.mean() + 0.01 * rng.uniform(size=N)
    ax = plot_predictions(_diagnosis(pred, targets, "linear"))
    low, high = ax.get_xlim()
    pad = 0.05 * (targets.max() - targets.min())
    assert (low, high) == pytest.approx((targets.min() - pad, targets.max() + pad))
    assert high - low > 100 * np.ptp(pred)  # not the predictions' spread
    assert _bar_heights(ax, "targets").sum() == N and "target units" in ax.get_xlabel()


def test_softmax_probabilities_are_drawn_against_the_one_hot_targets_and_outliers_are_counted():
    rng = np.random.default_rng(3)
    one_hot = np.eye(3)[rng.integers(0, 3, size=N)]
    ax = plot_predictions(_diagnosis(np.full((N, 3), 1 / 3), one_hot, "softmax"))
    assert ax.get_xlim() == (0.0, 1.0)
    assert _bar_heights(ax, f"class probabilities ({N} inputs × 3 classes)").sum() == 3 * N
    assert _bar_heights(ax, "targets (one-hot entries)").sum() == 3 * N

    targets = rng.uniform(size=N)  # regression: a prediction outside the targets' range, one non-finite
    pred = targets.copy()
    pred[:2] = [50.0, np.nan]
    ax = plot_predictions(_diagnosis(pred, targets, "linear"))
    label = f"predictions ({N} inputs); 1 outside the range; 1 non-finite"
    assert _bar_heights(ax, label).sum() == N - 2


def test_remedies_get_distinct_categorical_colours_and_legible_names_at_their_ends():
    """Defect: remedies were drawn with a sequential colour map (neighbours indistinguishable), legend at 6 pt."""
    steps = 200
    rng = np.random.default_rng(4)

    def outcomes(k):
        names = ["as given"] + [f"remedy_{i}" for i in range(k - 1)]
        return {name: RemedyOutcome(name, np.zeros(2), np.ones(2), np.ones(2), np.ones(2),
                                    rng.uniform(0.1, 0.7, size=(2, steps)), np.ones((2, 3))) for name in names}

    ax = plot_remedy_curves(outcomes(5), output="sigmoid")
    lines = {line.get_label(): line for line in ax.get_lines()}
    given = lines["as given"]
    assert mcolors.to_hex(given.get_color()) == "#000000"
    assert given.get_linewidth() > max(line.get_linewidth() for name, line in lines.items() if name != "as given")
    colours = [mcolors.to_hex(line.get_color()).upper() for name, line in lines.items() if name != "as given"]
    assert len(set(colours)) == len(colours) and set(colours) <= set(CATEGORICAL) - {"#000000"}
    assert len({str(line.get_linestyle()) for name, line in lines.items() if name != "as given"}) == 4
    assert ax.get_legend() is None  # named at the line ends instead
    names = {t.get_text(): t for t in ax.texts}
    assert set(names) == {"as given", "remedy 0", "remedy 1", "remedy 2", "remedy 3"}
    assert all(t.get_fontsize() >= 7 for t in names.values())
    assert all(mcolors.to_hex(names[n.replace("_", " ")].get_color()) == mcolors.to_hex(line.get_color())
               for n, line in lines.items())
    positions = sorted(t.xy[1] for t in names.values())  # spread apart: never on top of each other
    assert np.min(np.diff(positions)) > 0.02
    assert ax.get_title() == "mean of 2 seeds, 4-step moving average"
    assert ax.get_ylabel() == "minibatch cross-entropy (nats)"

    ax = plot_remedy_curves(outcomes(DIRECT_LABELS + 2))  # more than DIRECT_LABELS: a legend below the axes
    legend = ax.get_legend()
    assert legend is not None and min(t.get_fontsize() for t in legend.get_texts()) >= 7
    ax.figure.canvas.draw()
    assert legend.get_window_extent().y1 <= ax.xaxis.label.get_window_extent().y0  # below the x label
    assert ax.figure.get_window_extent().contains(*legend.get_window_extent().p0)  # inside the figure
    colours = [mcolors.to_hex(line.get_color()) for line in ax.get_lines()]
    styles = [(c, str(line.get_linestyle())) for c, line in zip(colours, ax.get_lines())]
    assert len(set(styles)) == len(styles)


def test_gate_histograms_use_the_natural_ranges_and_shade_what_the_check_counts_as_saturated():
    rng = np.random.default_rng(5)
    forget = np.concatenate([np.full(30, 0.99), rng.uniform(0.2, 0.8, size=70)])
    ax = plot_gate_histogram(forget, "forget")
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_yscale() == "log" and "count" in ax.get_ylabel()
    assert saturated_fraction(forget, "forget") == pytest.approx(0.3)
    assert ax.get_title() == "forget gate\n30% saturated"
    spans = [p for p in ax.patches if p.get_label() != "_nolegend_" and p.get_zorder() == 0]
    assert len(spans) == 2  # [0, 0.05] and [0.95, 1]
    candidate = plot_gate_histogram(np.tanh(rng.normal(size=100)), "cell", activation="tanh")
    assert candidate.get_xlim() == (-1.0, 1.0)
    relu = plot_gate_histogram(np.maximum(0, 3 * rng.normal(size=100)), "cell", activation="relu")
    assert relu.get_xlim()[0] == 0.0 and relu.get_xlim()[1] > 1


def test_the_saturated_share_is_the_checks_fraction():
    """The number written on a panel is the saturation check's (same bounds, same values)."""
    from gradflow.diagnose.checks import check_saturation

    d = _diagnosis(np.zeros(N), np.zeros(N), "linear")
    stats = d.evidence.gates["0 forward"]
    per_step = {g: np.mean((v < 0.05) | (v > 0.95) if g != "cell" else np.abs(v) > 0.95, axis=(0, 2))
                for g, v in stats.values.items()}
    check = check_saturation(GateStatistics(per_step, stats.values, stats.max_abs_h), t=THRESHOLDS)
    for gate, values in stats.values.items():
        assert saturated_fraction(values, gate) == pytest.approx(check["fraction_saturated"][gate])


def test_every_panel_draws_on_a_given_axes_and_the_gate_figure_has_a_row_per_layer():
    rng = np.random.default_rng(6)
    d = _diagnosis(rng.uniform(size=N), (rng.uniform(size=N) < 0.5).astype(float), "sigmoid",
                   layers=("0 forward", "1 forward"))
    _, axes = plt.subplots(1, 3)
    assert plot_lag_profile(d, ax=axes[0]) is axes[0]
    assert plot_predictions(d, ax=axes[1]) is axes[1]
    assert plot_gate_histogram(d.evidence.gates["0 forward"].values["forget"], "forget", ax=axes[2]) is axes[2]
    assert axes[0].get_xlabel() == "lag $T - t$ (steps)"
    threshold = [t for t in axes[0].texts if t.get_text().startswith("vanishing threshold")]
    assert len(threshold) == 1 and threshold[0].get_position()[1] == -THRESHOLDS["vanishing_decades"]
    assert {t.get_text() for t in axes[0].texts} >= {"layer 0 forward", "layer 1 forward"}  # named at the ends
    assert axes[0].get_title() == "mean over 16 input sequences"

    figure = gate_saturation_figure(d)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 8 and figure.axes[0].get_ylabel().startswith("layer 0 forward")
    assert [ax.get_xlim() for ax in visible[:4]] == [(0, 1), (0, 1), (-1, 1), (0, 1)]


def test_plot_diagnosis_writes_the_reports_files(tmp_path):
    rng = np.random.default_rng(7)
    remedies = {name: RemedyOutcome(name, np.zeros(1), np.ones(1), np.ones(1), np.ones(1),
                                    rng.uniform(size=(1, 30)), np.ones((1, 2))) for name in ("as given", "lr x10")}
    d = _diagnosis(rng.uniform(size=N), (rng.uniform(size=N) < 0.5).astype(float), "sigmoid", remedies=remedies)
    paths = plot_diagnosis(d, tmp_path / "report")
    stems = ("lag_profile", "gate_saturation", "predictions", "loss_curves")
    assert [p.name for p in paths] == [f"{s}.{e}" for s in stems for e in ("pdf", "png")]
    assert all(p.stat().st_size > 5000 for p in paths)
    assert plt.get_fignums() == []  # every figure closed
    again = plot_diagnosis(d, tmp_path / "again")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]  # deterministic
