"""The figures of a diagnosis report: the lag profile, gate histograms, predictions, loss curves per remedy.

Drawn from a :class:`gradflow.diagnose.checks.Diagnosis` (its measured arrays, :class:`Evidence`), never
recomputed. One-Axes functions take ``ax=`` (a panel of your figure) and return the Axes:
:func:`plot_lag_profile`, :func:`plot_gate_histogram`, :func:`plot_predictions`, :func:`plot_remedy_curves`;
:func:`gate_saturation_figure` composes the gate histograms; :func:`plot_diagnosis` writes the report's files.

Values are drawn on their natural ranges, so that what the checks judge shows: probabilities on 0..1 and
regression predictions on the targets' range (a collapsed model is a spike, not a spread-out histogram), sigmoid
gates on 0..1 and tanh candidates on -1..1 with the saturated bands shaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gradflow.diagnose.checks import PROFILE_SEQUENCES, Diagnosis, Evidence
from gradflow.flow.saturation import CANDIDATES, SATURATION_BOUNDS, saturated
from gradflow.plot.style import (
    CATEGORICAL,
    COLUMN_WIDTH,
    LINESTYLES,
    PAGE_WIDTH,
    STYLE,
    WRT_LABELS,
    figure_size,
    in_house_style,
    make_ticks,
    new_axes,
    save_figure,
)

#: At most this many lines are named at their ends; more get a legend.
DIRECT_LABELS = 6
#: Font size (points) of direct labels, legends and notes: legible at one-column print size.
NOTE_SIZE = 7.0
#: Cell activations whose values lie in [-1, 1] (and so bound the candidates and, with them, h).
BOUNDED = ("tanh", "softsign")
#: Bins of the histograms over their natural range (sigmoid gates: the saturation bounds 0.05 and 0.95 are edges).
BINS = 40
#: The unit of the gate histograms' counts.
COUNT_LABEL = "count\n(inputs × steps × units)"
#: Colours of the setup as given, and of the remedies (Okabe-Ito without its black).
AS_GIVEN = "as given"
REMEDY_COLOURS = tuple(c for c in CATEGORICAL if c != "#000000")


def plot_diagnosis(d: Diagnosis, directory: str | Path) -> list[Path]:
    """Every figure of the report of ``d`` into ``directory`` (``lag_profile``, ``gate_saturation``,
    ``predictions`` and, with remedies, ``loss_curves``; each .pdf and .png) and return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    drawn = {"lag_profile": plot_lag_profile(d).figure, "gate_saturation": gate_saturation_figure(d),
             "predictions": plot_predictions(d).figure}
    if d.remedy_outcomes:
        drawn["loss_curves"] = plot_remedy_curves(d.remedy_outcomes, output=d.evidence.output).figure
    return [path for name, fig in drawn.items() for path in save_figure(fig, directory / name)]


def _label_ends(ax, ends: list[tuple[float, str, str]]) -> list:
    """Name lines at the right edge of ``ax``: ``ends`` is ``[(y, name, colour)]``, y in data units (None: no finite
    end, named at the top); names closer than a line of text are spread apart. Returns the texts."""
    low, high = ax.get_ylim()
    height = ax.get_position().height * ax.figure.get_figheight()
    gap = 1.2 * NOTE_SIZE / 72 / height  # one line of text, in axes fraction
    place = [1.0 if y is None else float(np.clip((y - low) / (high - low), 0, 1)) for y, _, _ in ends]
    order = np.argsort(place, kind="stable")
    spread = np.array(place)[order]
    for i in range(1, spread.size):
        spread[i] = max(spread[i], spread[i - 1] + gap)
    spread[-1:] = np.minimum(spread[-1:], 1.0)
    for i in range(spread.size - 2, -1, -1):
        spread[i] = min(spread[i], spread[i + 1] - gap)
    texts = [None] * len(ends)
    for k, i in enumerate(order):
        _, name, colour = ends[i]
        texts[i] = ax.annotate(name, xy=(1.0, spread[k]), xycoords="axes fraction", xytext=(3, 0),
                               textcoords="offset points", color=colour, fontsize=NOTE_SIZE, va="center", ha="left",
                               annotation_clip=False)
    return texts


def _last_finite(y: np.ndarray) -> float | None:
    finite = np.flatnonzero(np.isfinite(y))
    return float(y[finite[-1]]) if finite.size else None


@in_house_style
def plot_lag_profile(d: Diagnosis, *, ax=None):
    """Every layer's lag profile ``log10 ||dh_T/dh_t||`` against lag (one layer: the profile alone), with the
    vanishing threshold ``-vanishing_decades`` drawn and named.

    Layers are categories (colour and line style each); up to :data:`DIRECT_LABELS` are named at their line ends,
    more in a legend. Non-finite lags (an exactly vanished Jacobian) are not drawn; the title says how many.

    Returns:
      The Axes.
    """
    ax = new_axes(ax)
    ev = d.evidence
    profiles = ev.layer_profiles or {"": ev.lag_profile}
    ends, zero, overflow, lags = [], 0, 0, 1
    for i, (label, profile) in enumerate(profiles.items()):
        profile = np.asarray(profile, dtype=float)
        colour, style = CATEGORICAL[i % len(CATEGORICAL)], LINESTYLES[i % len(LINESTYLES)]
        zero += int(np.sum(profile == -np.inf))
        overflow += int(np.sum(np.isnan(profile) | (profile == np.inf)))
        lags = max(lags, profile.size)
        ax.plot(np.arange(1, profile.size + 1), np.where(np.isfinite(profile), profile, np.nan), color=colour,
                ls=style, label=f"layer {label}" if label else None)
        ends.append((_last_finite(profile), f"layer {label}", colour))
    threshold = -d.thresholds["vanishing_decades"]
    ax.axhline(threshold, color="0.45", ls="--", lw=0.8)
    ax.text(0.02, threshold, f"vanishing threshold ($10^{{{threshold:g}}}$)", transform=ax.get_yaxis_transform(),
            color="0.3", fontsize=NOTE_SIZE, va="bottom", ha="left")
    if len(profiles) > DIRECT_LABELS:
        ax.legend(fontsize=NOTE_SIZE, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    elif len(profiles) > 1:
        _label_ends(ax, ends)
    notes = [f"not drawn: {zero} lags with norm 0 ($-\\infty$)" if zero else "",
             f"not drawn: {overflow} lags that overflow" if overflow else ""]
    if any(notes):
        ax.text(0.98, 0.98, "\n".join(n for n in notes if n), transform=ax.transAxes, fontsize=NOTE_SIZE,
                ha="right", va="top")
    sequences = min(PROFILE_SEQUENCES, len(ev.predictions))
    if sequences > 1:
        ax.set_title(f"mean over {sequences} input sequences", fontsize=NOTE_SIZE + 1)
    ax.set_xlim(1, max(lags, 2))
    ax.set_xlabel("lag $T - t$ (steps)")
    ax.set_ylabel(WRT_LABELS["h"])
    ax.grid(alpha=0.3, lw=0.5)
    return ax


def gate_range(values: np.ndarray, gate: str, activation: str = "tanh") -> tuple[float, float]:
    """The natural range of a gate's values: 0..1 for a sigmoid gate, -1..1 for a candidate of a bounded cell
    activation (tanh, softsign), else the values' finite range widened to include the saturation bound."""
    if gate not in CANDIDATES:
        return 0.0, 1.0
    if activation in BOUNDED:
        return -1.0, 1.0
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    low = 0.0 if activation == "relu" else min(-1.0, float(finite.min(initial=0.0)))
    return low, max(1.0, float(finite.max(initial=0.0)))


def saturated_fraction(values: np.ndarray, gate: str) -> float:
    """The fraction of ``values`` the saturation check counts as saturated (:data:`SATURATION_BOUNDS`; a
    non-finite value is not saturated)."""
    return float(np.mean(np.asarray(saturated({gate: np.asarray(values)}, **SATURATION_BOUNDS)[gate])))


def _gate_title(gate: str, activation: str) -> str:
    return f"candidate ({activation})" if gate in CANDIDATES else f"{gate} gate"


@in_house_style
def plot_gate_histogram(values: np.ndarray, gate: str, *, activation: str = "tanh", ax=None):
    """Histogram of one gate's values on its natural range (:func:`gate_range`), counts on a log scale, the
    saturated bands (:data:`gradflow.flow.saturation.SATURATION_BOUNDS`) shaded and their share written.

    Args:
      values: the gate's values, any shape (inputs x steps x units).
      gate: its name (``"forget"``; a name in :data:`gradflow.flow.saturation.CANDIDATES` is a candidate).
      activation: the layer's cell activation, which bounds a candidate's values.
      ax: the Axes to draw on; None for a new one-column figure.

    Returns:
      The Axes.
    """
    ax = new_axes(ax, size=figure_size(1, 0.6))
    v = np.asarray(values, dtype=float).ravel()
    finite = v[np.isfinite(v)]
    low, high = gate_range(v, gate, activation)
    b = SATURATION_BOUNDS
    if gate in CANDIDATES:
        bands = [(low, -b["cell"])] if low < -b["cell"] else []
        bands += [(b["cell"], high)]
    else:
        bands = [(low, b["low"]), (b["high"], high)]
    for start, stop in bands:
        ax.axvspan(start, stop, color="0.88", lw=0, zorder=0)
    ax.hist(finite, bins=BINS, range=(low, high), histtype="stepfilled", color=CATEGORICAL[0], zorder=2)
    ax.set_xlim(low, high)
    ax.set_yscale("log")
    note = f"{saturated_fraction(v, gate):.0%} saturated"
    if finite.size < v.size:
        note += f", {v.size - finite.size} non-finite"
    ax.set_title(f"{_gate_title(gate, activation)}\n{note}")
    ax.set_xlabel("candidate value" if gate in CANDIDATES else "gate value")
    ax.set_ylabel(COUNT_LABEL)
    return ax


def gate_saturation_figure(d: Diagnosis):
    """Every layer's gate histograms (:func:`plot_gate_histogram`): one row per layer, one panel per gate, the
    layer named at the left of its row when there are several. Returns the Figure."""
    layers = d.evidence.gates
    columns = max(len(s.values) for s in layers.values())
    width = COLUMN_WIDTH if columns <= 2 else PAGE_WIDTH
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(layers), columns, figsize=(width, 1.9 * len(layers) + 0.2), squeeze=False,
                                 sharey="row", layout="constrained")
        for row, (label, stats) in zip(axes, layers.items()):
            activation = d.evidence.activations.get(label, "tanh")
            for col, (ax, (gate, values)) in enumerate(zip(row, stats.values.items())):
                plot_gate_histogram(values, gate, activation=activation, ax=ax)
                if col:
                    ax.set_ylabel("")
                    ax.tick_params(labelleft=False)
                elif len(layers) > 1:
                    ax.set_ylabel(f"layer {label}\n{COUNT_LABEL}")
            for ax in row[len(stats.values):]:
                ax.set_visible(False)
        b = SATURATION_BOUNDS
        fig.suptitle(f"grey: saturated (gates outside [{b['low']:g}, {b['high']:g}], candidates $|g| > {b['cell']:g}$)",
                     fontsize=NOTE_SIZE)
        make_ticks(fig)
    return fig


def prediction_range(ev: Evidence) -> tuple[float, float]:
    """The natural range of the predictions: 0..1 for probabilities (sigmoid, softmax), the targets' range padded by
    5% for regression, -1..1 for the last hidden state of a model without a head whose cell activations are bounded
    (else the finite predictions' range)."""
    if ev.output in ("sigmoid", "softmax"):
        return 0.0, 1.0
    if ev.output is None:
        if ev.activations and all(a in BOUNDED for a in ev.activations.values()):
            return -1.0, 1.0
        values = np.asarray(ev.predictions, dtype=float)
    else:
        values = np.asarray(ev.predictions if ev.targets is None else ev.targets, dtype=float)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = 0.05 * (high - low) if high > low else max(0.5, 0.05 * abs(low))
    return low - pad, high + pad


@in_house_style
def plot_predictions(d: Diagnosis, *, ax=None):
    """Histogram of the model's predictions on their natural range (:func:`prediction_range`) with the targets'
    distribution in the same bins (hatched outline), so a collapsed model shows as a spike.

    Sigmoid: the probability of label 1 against the 0/1 labels; softmax: every class probability against the
    one-hot entries; linear: predictions against targets, pooled over outputs; without a head: ``h_T`` of every
    unit (no targets: they are not on its scale). Predictions outside the range or non-finite are counted in the
    legend, not drawn.

    Returns:
      The Axes.
    """
    ax = new_axes(ax, size=figure_size(1, 0.7))
    ev = d.evidence
    pred = np.asarray(ev.predictions, dtype=float)
    n = len(pred)
    pred = pred.reshape(n, -1)
    k = pred.shape[1]
    low, high = prediction_range(ev)
    edges = np.linspace(low, high, BINS + 1)
    finite = np.isfinite(pred)
    outside = int(np.sum(finite & ((pred < low) | (pred > high))))
    what = {"sigmoid": "predictions", "softmax": "class probabilities", "linear": "predictions", None: "$h_T$"}
    per = {"softmax": "classes", None: "units"}.get(ev.output, "outputs")
    shape = f"{n} inputs" if k == 1 else f"{n} inputs × {k} {per}"
    label = f"{what.get(ev.output, 'predictions')} ({shape})"
    missing = [f"{outside} outside the range" if outside else "", f"{int(np.sum(~finite))} non-finite"
               if not finite.all() else ""]
    label += "".join(f"; {m}" for m in missing if m)
    ax.hist(pred[finite], bins=edges, histtype="stepfilled", color=CATEGORICAL[0], alpha=0.75, label=label, zorder=2)
    if ev.targets is not None and ev.output is not None:
        targets = np.asarray(ev.targets, dtype=float).ravel()
        ax.hist(targets[np.isfinite(targets)], bins=edges, histtype="step", color=CATEGORICAL[5], hatch="////",
                lw=1.2, label="targets (one-hot entries)" if ev.output == "softmax" else "targets", zorder=3)
    ax.set_xlim(low, high)
    ax.set_xlabel({"sigmoid": "probability of label 1", "softmax": "class probability",
                   "linear": "prediction and target (target units)",
                   None: "final hidden state $h_T$"}.get(ev.output, "prediction"))
    ax.set_ylabel(f"count ({'inputs' if k == 1 else f'inputs × {per}'})")
    ax.legend(fontsize=NOTE_SIZE, loc="lower left", bbox_to_anchor=(0.0, 1.0), borderaxespad=0.2)
    return ax


def _loss_label(output: str | None) -> str:
    if output in ("sigmoid", "softmax"):
        return "minibatch cross-entropy (nats)"
    if output == "linear":
        return "minibatch squared error\n(target units$^2$)"
    return "minibatch loss"


@in_house_style
def plot_remedy_curves(outcomes: dict, *, output: str | None = None, ax=None):
    """Training loss against step for the setup as given (black, thicker) and each remedy (an Okabe-Ito colour and
    line style each), the mean over seeds smoothed by a moving average; up to :data:`DIRECT_LABELS` remedies are
    named at their line ends, more in a legend below the axes.

    Args:
      outcomes: remedy name -> :class:`gradflow.diagnose.checks.RemedyOutcome` (``"as given"`` first).
      output: the head's output function, which names the loss and its unit (None: unnamed).
      ax: the Axes to draw on; None for a new one-column figure.

    Returns:
      The Axes.
    """
    ax = new_axes(ax, size=figure_size(1, 0.8))
    ends, window, others = [], 1, 0
    seeds = max(np.shape(o.train_loss)[0] for o in outcomes.values())
    for name, o in outcomes.items():
        loss = np.asarray(o.train_loss, dtype=float)
        bad = int(np.sum(~np.all(np.isfinite(loss), axis=1)))
        with warnings.catch_warnings():  # a step where every seed is non-finite is a gap in the curve
            warnings.simplefilter("ignore", RuntimeWarning)
            curve = np.nanmean(np.where(np.isfinite(loss), loss, np.nan), axis=0)
        window = max(1, curve.size // 50)
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        if name == AS_GIVEN:
            colour, style, width = "#000000", "-", 2.0
        else:
            colour = REMEDY_COLOURS[others % len(REMEDY_COLOURS)]
            style, width = LINESTYLES[others % len(LINESTYLES)], 1.1
            others += 1
        text = name.replace("_", " ") + (f" ({bad} of {loss.shape[0]} seeds non-finite)" if bad else "")
        ax.plot(np.arange(smooth.size) + window, smooth, color=colour, ls=style, lw=width, label=text,
                zorder=3 if name == AS_GIVEN else 2)
        ends.append((_last_finite(smooth), text, colour))
    if len(outcomes) > DIRECT_LABELS:  # below the axes and their x label, in two columns
        ax.legend(fontsize=NOTE_SIZE, loc="upper center", bbox_to_anchor=(0.5, 0.0), borderaxespad=4.5, ncol=2,
                  handlelength=2.8, columnspacing=1.0)
    else:
        _label_ends(ax, ends)
    title = [f"mean of {seeds} seeds" if seeds > 1 else ""]
    title.append(f"{window}-step moving average" if window > 1 else "")
    ax.set_title(", ".join(t for t in title if t), fontsize=NOTE_SIZE + 1)
    ax.set_xlabel("training step")
    ax.set_ylabel(_loss_label(output))
    ax.grid(alpha=0.3, lw=0.5)
    return ax
