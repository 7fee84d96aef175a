r"""Diagnose a trained recurrent network: "why does my model output the same value?" answered by measurement.

The model is a :class:`gradflow.lstm.model.Model`: any stack of LSTM and GRU layers, forward, backward or
bidirectional, with or without a head; its activations and its head's output function are read from it. Every
layer is judged: a per-layer check (gradients, gates, weights) reports the worst layer's evidence with its
``layer`` label (``"1 forward"``) and every layer's status under ``per_layer``; dead units are pooled over layers.

Each check returns a status (``ok``, ``warn``, ``fail``) with its evidence; the thresholds are
:data:`THRESHOLDS` (override any of them with finite numbers >= 0, fractions in [0, 1] for
:data:`FRACTION_THRESHOLDS`; see :func:`check_thresholds`). A model and data diagnosis cannot judge (a head that
does not fit the targets, fewer than 2 sequences, an input width that does not fit the data) is a ValueError
that says what it takes. Checks (the fixed vocabulary :data:`CHECKS`):

- ``output_collapse``: standard deviation of the predictions over the inputs divided by that of the
  targets (``spread_ratio``; fail below ``collapse_spread``, warn below ``collapse_spread_warn``), with
  the loss against the best constant predictor. Not judged (``warn`` with a note) when predictions are
  non-finite or every target is the same (a constant prediction is then right).
- ``vanishing_gradients`` / ``exploding_gradients``: each layer's lag profile ``log10 ||dh_T/dh_t||`` (its
  inputs from the layer below held fixed; mean over up to 16 input sequences): fail if it is below ``-vanishing_decades`` at lag T - 1 (the first input
  cannot be learned from), or above ``exploding_decades`` anywhere; decay rate and horizon as evidence.
  ``-inf`` (an exactly zero Jacobian, e.g. dead relu units) is vanishing, never exploding; ``+inf`` or NaN
  (an overflow) fails exploding, with a note (see :func:`check_gradients`).
- ``gate_saturation``: fraction of sigmoid gate values outside [0.05, 0.95] and of candidates ``|g| > 0.95``
  (LSTM ``cell``, GRU ``candidate``), per gate and layer,
  over time and inputs; fail if a gate is saturated more than ``saturation`` of the time.
- ``dead_units``: fraction of hidden units with ``|h_t| < 1e-6`` at every step of every input (a relu
  cell whose candidate never opens); fail above ``dead_units``.
- ``weight_norms``: root-mean-square of kernel and recurrent kernel against their Glorot-uniform and
  orthogonal initial scales; fail if both are below ``weight_ratio`` of it (over-regularised).
- ``data_variability``: label balance and entropy, feature variance over inputs, data size; fail on
  constant labels or inputs, warn on a minority class under ``minority_rate`` or fewer than
  ``min_samples`` sequences.

With a training setup (:mod:`gradflow.diagnose.counterfactual`) two more checks run on the training itself:

- ``loss_plateau``: the training loss of the last tenth of the steps improves on the first tenth by
  less than ``plateau_improvement`` (relative).
- ``learning_rate``: ``||update|| / ||weights||`` per step: fail as ``too_high`` if it ever exceeds
  ``update_ratio_high`` (averaged over a checkpoint segment) or the loss diverges, as ``too_low`` if its
  median is below ``update_ratio_low``.

``likely_causes`` names causes from :data:`CAUSES` for every failing check (and warnings on the data).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.collapse.metrics import target_spread
from gradflow.data.tasks import Task
from gradflow.flow.engine import decay_rate, horizon
from gradflow.flow.networks import model_profiles
from gradflow.flow.saturation import saturated
from gradflow.lstm.model import (
    Layer,
    Model,
    final_state,
    head_logits,
    head_loss,
    head_output,
    hidden_states,
    layer_gates,
    level_inputs,
    level_layers,
)

CHECKS = ("output_collapse", "vanishing_gradients", "exploding_gradients", "gate_saturation", "dead_units",
          "weight_norms", "data_variability", "loss_plateau", "learning_rate")
CAUSES = ("vanishing_gradients", "exploding_gradients", "gate_saturation", "dead_units", "learning_rate_too_low",
          "learning_rate_too_high", "loss_plateau", "no_signal_in_data", "too_little_data", "over_regularization")

THRESHOLDS: dict[str, float] = {
    "collapse_spread": 0.1,
    "collapse_spread_warn": 0.3,
    "vanishing_decades": 10.0,
    "vanishing_decades_warn": 5.0,
    "exploding_decades": 5.0,
    "saturation": 0.5,
    "saturation_warn": 0.2,
    "dead_units": 0.25,
    "dead_units_warn": 0.05,
    "weight_ratio": 0.1,
    "weight_ratio_warn": 0.3,
    "minority_rate": 0.05,
    "minority_rate_warn": 0.2,
    "min_samples": 100,
    "plateau_improvement": 0.05,
    "update_ratio_low": 1e-5,
    "update_ratio_high": 0.1,
}

#: Sequences used for the lag profile and the gate statistics (the first ones of the data).
PROFILE_SEQUENCES = 16
GATE_SEQUENCES = 256


#: Thresholds that are fractions, in [0, 1]; every other threshold is a finite number >= 0.
FRACTION_THRESHOLDS = ("saturation", "saturation_warn", "dead_units", "dead_units_warn", "minority_rate",
                       "minority_rate_warn")


def check_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    """:data:`THRESHOLDS` with ``thresholds`` overriding them, validated.

    Raises:
      ValueError: an unknown name, or a value that is not a finite number >= 0 (a fraction in [0, 1] for the
        names in :data:`FRACTION_THRESHOLDS`); the message names the threshold.
    """
    given = dict(thresholds or {})
    unknown = sorted(set(given) - set(THRESHOLDS))
    if unknown:
        raise ValueError(f"unknown threshold(s) {unknown}; known: {sorted(THRESHOLDS)}")
    for name, value in given.items():
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        if not number or not math.isfinite(value) or value < 0:
            raise ValueError(f"threshold {name} must be a finite number >= 0; got {value!r}")
        if name in FRACTION_THRESHOLDS and value > 1:
            raise ValueError(f"threshold {name} must be a fraction in [0, 1]; got {value:g}")
    return {**THRESHOLDS, **{name: float(value) for name, value in given.items()}}


def _status(value: float, fail: float, warn: float, *, below: bool) -> str:
    """``ok``, ``warn`` or ``fail`` for ``value`` against its thresholds; infinities compare as the extremes they
    are. NaN cannot be judged: the caller handles it before (ValueError here, never a silent verdict)."""
    if math.isnan(value):
        raise ValueError("a NaN cannot be judged against a threshold")
    if below:
        return "fail" if value < fail else "warn" if value < warn else "ok"
    return "fail" if value > fail else "warn" if value > warn else "ok"


def diagnosed_layers(model: Model) -> list[tuple[str, int, Layer]]:
    """Every recurrent layer diagnosis judges, bottom first, as ``(label, level, layer)``; the label is
    ``"<level> <direction>"`` (``"0 forward"``)."""
    return [(f"{depth} {layer.direction}", depth, layer)
            for depth, level in enumerate(model.layers) for layer in level_layers(level)]


def _outputs(model: Model, X: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The head's logits (N, k) (None without a head) and the predictions of :func:`predict`."""
    xs = jnp.asarray(X)
    if model.head is None:
        return None, np.asarray(jax.vmap(lambda x: final_state(model, x))(xs))
    logits = jax.vmap(lambda x: head_logits(model, x))(xs)
    pred = np.asarray(head_output(model.head.output, logits))  # in JAX: no overflow warnings for huge logits
    return np.asarray(logits), pred[:, 0] if pred.shape[1] == 1 and model.head.output != "softmax" else pred


def predict(model: Model, X: np.ndarray) -> np.ndarray:
    """Predictions for X (N, T, D): the head's output function of its logits (sigmoid: probabilities, softmax:
    (N, k) probabilities, linear: values; a single output as (N,)), or ``h_T`` itself when the model has no head."""
    return _outputs(model, X)[1]


def best_constant_loss(output: str, y: np.ndarray) -> float:
    r"""The loss (:func:`gradflow.lstm.model.head_loss` of a head with output function ``output``) of the best
    constant prediction of ``y`` (N,) or (N, k): the head's own loss, whatever kind the labels are.

    With :math:`\bar y` the mean target per output: sigmoid :math:`-\bar y \log \bar y - (1 - \bar y) \log(1 - \bar y)`
    averaged over outputs, softmax :math:`-\sum_j \bar y_j \log \bar y_j`, linear the variance averaged over outputs.

    Example:
      >>> round(best_constant_loss("sigmoid", np.array([0.0, 1.0, 1.0, 0.0])), 4)  # log 2
      0.6931
    """
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    mean = y.mean(0)
    if output == "sigmoid":
        p = np.clip(mean, 1e-12, 1 - 1e-12)
        return float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))
    if output == "softmax":
        p = np.clip(mean, 1e-12, 1)
        return float(-(mean * np.log(p)).sum())
    return float(np.mean(y.var(0)))


def check_output_collapse(model: Model, task: Task, logits: np.ndarray | None, pred: np.ndarray, *, t) -> dict:
    """Spread of ``pred`` (the model's predictions for ``task.X``, see :func:`predict`) against the targets, and
    the loss of ``logits`` (:func:`gradflow.lstm.model.head_loss`) against the best constant predictor's."""
    flat = pred.reshape(len(pred), -1)
    spread = float(np.mean(flat.std(0)))
    if model.head is None:  # no head: judge h_T against its own scale
        scale = float(np.sqrt(np.mean(flat**2))) or 1e-12
        ratio, note = spread / scale, "no output head: spread of h_T over inputs relative to its RMS"
        loss_ratio = float("nan")
    else:
        ratio = spread / max(target_spread(task.y), 1e-12)
        note = "standard deviation of the predictions over inputs / that of the targets"
        loss = float(head_loss(model.head.output, jnp.asarray(logits), jnp.asarray(task.y)))
        loss_ratio = loss / max(best_constant_loss(model.head.output, task.y), 1e-12)
    bad = int(np.sum(~np.isfinite(flat).all(axis=1)))
    if bad:  # a spread of overflowing outputs is no measure of collapse
        status = "warn"
        note = (f"not judged: {bad} of {len(flat)} predictions are non-finite (the forward pass overflows; see "
                f"exploding_gradients)")
    elif model.head is not None and target_spread(task.y) == 0:  # a constant predictor is right: nothing to judge
        status = "warn"
        note = "not judged: every target is the same, so a constant prediction is correct (see data_variability)"
    else:
        status = _status(ratio, t["collapse_spread"], t["collapse_spread_warn"], below=True)
    return {
        "status": status, "spread_ratio": ratio, "prediction_std": spread, "prediction_mean": float(np.mean(flat)),
        "loss_ratio_to_best_constant": loss_ratio, "note": note,
    }


def layer_profiles(model: Model, X: np.ndarray) -> dict[str, np.ndarray]:
    """Each layer's lag profile ``log10 ||dh_T/dh_{T-k}||`` by lag 1..T (its inputs from the layer below held
    fixed, an LSTM's c too), mean over the first :data:`PROFILE_SEQUENCES` sequences, keyed by layer label."""
    profile = model_profiles(model, jnp.asarray(X[:PROFILE_SEQUENCES]), wrt="h")
    return {label: p.log10_norm_h for (label, _, _), p in zip(diagnosed_layers(model), profile.layers)}


_RANK = {"ok": 0, "warn": 1, "fail": 2}


def _worst(per_layer: dict[str, dict], key: str, sign: int) -> tuple[str, dict]:
    """The check of the layer judged worst: the highest status, ties broken by ``sign * check[key]`` (largest
    first; NaN last). One layer: its check as it is; several: that check with ``layer`` (its label) and
    ``per_layer`` (each layer's status and ``key``)."""
    def badness(item):
        value = item[1].get(key, float("nan"))
        number = value if isinstance(value, (int, float)) and not math.isnan(value) else -math.inf * sign
        return _RANK[item[1]["status"]], sign * number

    label, check = max(per_layer.items(), key=badness)
    if len(per_layer) == 1:
        return label, check
    return label, {**check, "layer": label,
                   "per_layer": {name: {"status": c["status"], key: c.get(key)} for name, c in per_layer.items()}}


def check_gradients(profile: np.ndarray, *, t) -> tuple[dict, dict]:
    """The vanishing and exploding checks of a lag profile ``log10 ||dh_T/dh_{T-k}||`` (T,), by what its values mean.

    ``-inf`` is an exactly zero Jacobian (no gradient at all: vanishing, never exploding); ``+inf`` an overflowing
    norm (exploding); NaN an overflow inside the Jacobian or the forward pass: exploding fails, and where lag T - 1
    is NaN the vanishing check is not judged (``warn`` with a note).
    """
    T = profile.shape[0]
    at_first = float(profile[-1])
    rate = float(decay_rate(jnp.asarray(profile)))
    reach = float(horizon(jnp.asarray(profile), decades=t["vanishing_decades"]))
    vanishing = {
        "status": "", "log10_norm_at_lag_T_minus_1": at_first, "decay_rate_decades_per_step": rate,
        "horizon_steps": reach if math.isfinite(reach) else "beyond T", "seq_len": T,
    }
    if math.isnan(at_first):
        vanishing.update(status="warn", note="not judged: the lag profile is NaN at lag T - 1 (an overflow; see "
                                             "exploding_gradients)")
    else:
        vanishing["status"] = _status(at_first, -t["vanishing_decades"], -t["vanishing_decades_warn"], below=True)
        zero = np.flatnonzero(np.isneginf(profile))
        if zero.size:
            vanishing["note"] = (f"the Jacobian dh_T/dh_(T-k) is exactly zero (log10 norm -inf, for at least one "
                                 f"profiled input) from lag {zero[0] + 1}: no gradient reaches those steps")
    nan = np.isnan(profile)
    peak = float(np.max(profile[~nan])) if not nan.all() else float("nan")
    exploding = {
        "status": "", "max_log10_norm": peak, "lag_of_max": int(np.argmax(np.where(nan, -np.inf, profile))) + 1,
        "decay_rate_decades_per_step": rate,
    }
    if nan.any() or np.isposinf(peak):
        exploding.update(status="fail", note=f"non-finite lag norms: {int(nan.sum())} NaN and "
                                             f"{int(np.isposinf(profile).sum())} +inf of {T} lags (an overflow)")
    else:
        exploding["status"] = _status(peak, t["exploding_decades"], t["exploding_decades"] / 2, below=False)
        if np.isneginf(peak):
            exploding["note"] = "the Jacobian is exactly zero at every lag: nothing to explode"
    return vanishing, exploding


@dataclasses.dataclass(frozen=True)
class GateStatistics:
    """Gates of the diagnosed layer over the first :data:`GATE_SEQUENCES` inputs.

    Attributes:
      per_step: gate name -> saturated fraction at each step (T,), over inputs and units.
      values: gate name -> the gate values (N, T, H), for histograms.
      max_abs_h: each unit's largest ``|h_t|`` over steps and inputs (H,).
    """

    per_step: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    max_abs_h: np.ndarray


def gate_statistics(model: Model, X: np.ndarray) -> dict[str, GateStatistics]:
    """Per layer (keyed by label): saturated fraction per gate and step (T,) over the first :data:`GATE_SEQUENCES`
    inputs, the gate values themselves (for histograms), and each unit's largest |h_t|."""
    xs = jnp.asarray(X[:GATE_SEQUENCES])
    inputs = jax.vmap(lambda x: level_inputs(model, x))(xs)
    stats = {}
    for label, depth, layer in diagnosed_layers(model):
        gates = jax.vmap(lambda x: layer_gates(layer, x))(inputs[depth])._asdict()  # the kernel's block order
        masks = saturated(gates)
        below = inputs[depth + 1] if depth + 1 < len(model.layers) else jax.vmap(lambda x: hidden_states(model, x))(xs)
        h = below[..., : layer.hidden_size] if layer.direction == "forward" else below[..., layer.hidden_size:]
        stats[label] = GateStatistics(
            per_step={g: np.asarray(jnp.mean(mask, axis=(0, 2))) for g, mask in masks.items()},
            values={g: np.asarray(v) for g, v in gates.items()},
            max_abs_h=np.asarray(jnp.max(jnp.abs(h), axis=(0, 1))),
        )
    return stats


def check_saturation(stats: GateStatistics, *, t) -> dict:
    fractions = {g: float(np.mean(v)) for g, v in stats.per_step.items()}
    worst = max(fractions, key=fractions.get)
    out = {"status": _status(fractions[worst], t["saturation"], t["saturation_warn"], below=False),
           "fraction_saturated": fractions, "most_saturated_gate": worst, "largest_fraction_saturated": fractions[worst],
           "bounds": "sigmoid gates outside [0.05, 0.95]; candidates |g| > 0.95"}
    bad = sum(int(np.sum(~np.isfinite(v))) for v in stats.values.values())
    if bad:  # NaN gates count as unsaturated in the fractions: say so, and never call it ok
        total = sum(v.size for v in stats.values.values())
        out.update(status="fail" if out["status"] == "fail" else "warn",
                   note=f"{bad} of {total} gate values are non-finite (the forward pass overflows) and are not "
                        f"counted as saturated")
    return out


def check_dead_units(stats: GateStatistics | Mapping[str, GateStatistics], *, t) -> dict:
    """Fraction of hidden units that never leave ``|h_t| < 1e-6``, over every layer's units (per layer too, for a
    stack: ``dead_units`` lists ``(layer, unit)``)."""
    per_layer = {"": stats} if isinstance(stats, GateStatistics) else dict(stats)
    dead = {label: s.max_abs_h < 1e-6 for label, s in per_layer.items()}
    fraction = float(np.mean(np.concatenate(list(dead.values()))))
    out = {"status": _status(fraction, t["dead_units"], t["dead_units_warn"], below=False), "fraction_dead": fraction}
    if len(dead) == 1:
        return {**out, "dead_units": np.flatnonzero(next(iter(dead.values()))).tolist()}
    return {**out, "dead_units": [f"{label}: {i}" for label, d in dead.items() for i in np.flatnonzero(d)],
            "per_layer": {label: float(np.mean(d)) for label, d in dead.items()}}


def _weight_ratio(layer: Layer) -> dict:
    params = layer.params
    D, H = params.input_size, params.hidden_size
    blocks = params.W.shape[-1] // H
    rms_w = float(np.sqrt(np.mean(np.square(params.W))))
    rms_u = float(np.sqrt(np.mean(np.square(params.U))))
    init_w = math.sqrt(2.0 / (D + blocks * H))  # Glorot uniform over (D, 4H) (LSTM) or (D, 3H) (GRU)
    init_u = 1.0 / math.sqrt(H)  # orthogonal (H, H) blocks
    return {"kernel_rms": rms_w, "kernel_initial_rms": init_w, "recurrent_kernel_rms": rms_u,
            "recurrent_kernel_initial_rms": init_u, "largest_ratio_to_initial": max(rms_w / init_w, rms_u / init_u)}


def check_weight_norms(model: Model, *, t) -> dict:
    """Root-mean-square weights against their initial scales; over-regularised (fail) when every layer's kernels
    are below ``weight_ratio`` of them. A stack reports each layer and the largest ratio."""
    layers = {label: _weight_ratio(layer) for label, _, layer in diagnosed_layers(model)}
    ratio = max(layer["largest_ratio_to_initial"] for layer in layers.values())
    status = _status(ratio, t["weight_ratio"], t["weight_ratio_warn"], below=True)
    if len(layers) == 1:
        return {"status": status, **next(iter(layers.values()))}
    return {"status": status, "largest_ratio_to_initial": ratio,
            "per_layer": {label: layer["largest_ratio_to_initial"] for label, layer in layers.items()}}


def check_data(task: Task, *, t) -> dict:
    y = task.y.reshape(task.n, -1)
    feature_std = float(np.mean(task.X.reshape(task.n, -1).std(0)))
    evidence: dict[str, Any] = {"n": task.n, "seq_len": task.seq_len, "features": task.input_size, "kind": task.kind,
                                "feature_std_over_inputs": feature_std}
    problems = []
    if task.kind in ("binary", "multiclass"):
        freq = y.mean(0) if task.kind == "multiclass" else np.array([1 - y.mean(), y.mean()])
        entropy = float(-(freq[freq > 0] * np.log2(freq[freq > 0])).sum())
        evidence.update(class_frequencies=freq.tolist(), label_entropy_bits=entropy, minority_rate=float(freq.min()))
        if freq.max() == 1:
            problems.append(("fail", "every label is the same"))
        elif freq.min() < t["minority_rate"]:
            problems.append(("fail", f"minority class below {t['minority_rate']:g}"))
        elif freq.min() < t["minority_rate_warn"]:
            problems.append(("warn", f"minority class below {t['minority_rate_warn']:g}"))
    else:
        evidence["target_std"] = float(y.std(0).mean())
        if evidence["target_std"] == 0:
            problems.append(("fail", "every target is the same"))
    if feature_std < 1e-8:
        problems.append(("fail", "the inputs do not vary"))
    if task.n < t["min_samples"]:
        problems.append(("warn", f"only {task.n} sequences (fewer than {t['min_samples']:g})"))
    status = "fail" if any(s == "fail" for s, _ in problems) else "warn" if problems else "ok"
    evidence.update(status=status, problems=[p for _, p in problems])
    return evidence


@dataclasses.dataclass(frozen=True)
class Evidence:
    """The measured arrays behind the static checks, which the report's figures draw.

    Attributes:
      lag_profile: ``log10 ||dh_T/dh_{T-k}||`` by lag k = 1..T, mean over the first :data:`PROFILE_SEQUENCES`
        inputs, of the layer the vanishing check judged (the only one, or the worst of a stack).
      gates: each layer's :class:`GateStatistics`, keyed by layer label (``"0 forward"``).
      predictions: the model's predictions for the inputs (see :func:`predict`).
      layer_profiles: every layer's lag profile, keyed by layer label.
      targets: the targets the predictions are judged against (``task.y``: (N,) or (N, k)); None if not known.
      output: the head's output function (``"sigmoid"``, ``"softmax"``, ``"linear"``); None without a head (the
        predictions are then ``h_T``).
      activations: each layer's cell activation, keyed by layer label (it bounds the candidates' values).
    """

    lag_profile: np.ndarray
    gates: dict[str, GateStatistics]
    predictions: np.ndarray
    layer_profiles: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    targets: np.ndarray | None = None
    output: str | None = None
    activations: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RemedyOutcome:
    """One remedy (or the setup as given) trained over the seeds; arrays have the seeds as leading axis."""

    name: str
    collapsed: np.ndarray  # (seeds,)
    learned: np.ndarray
    final_val_loss: np.ndarray
    val_accuracy: np.ndarray
    train_loss: np.ndarray  # (seeds, steps)
    update_ratio: np.ndarray  # (seeds, C)

    @property
    def verdict(self) -> str:
        """The majority verdict over the seeds: ``collapsed``, ``learned`` or ``neither``."""
        c, l = np.mean(self.collapsed), np.mean(self.learned)
        return "collapsed" if c >= 0.5 else "learned" if l > 0.5 else "neither"


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """Checks with their evidence, the collapse verdict and the likely causes.

    Attributes:
      collapsed: the verdict (from the checks; with a training setup, the majority over seeds).
      checks: check name (from :data:`CHECKS`) -> its status and evidence.
      likely_causes: causes from :data:`CAUSES`, most direct first.
      thresholds: the thresholds in force.
      evidence: the measured arrays (for figures).
      remedy_outcomes: with a training setup, remedy name -> :class:`RemedyOutcome` (``"as given"`` first).
    """

    collapsed: bool
    checks: dict[str, dict]
    likely_causes: list[str]
    thresholds: dict[str, float]
    evidence: Evidence = dataclasses.field(repr=False)
    remedy_outcomes: dict[str, RemedyOutcome] | None = dataclasses.field(default=None, repr=False)

    @property
    def remedies(self) -> dict | None:
        """Each remedy's verdict, fractions, validation loss and whether it changes the setup's outcome."""
        if self.remedy_outcomes is None:
            return None
        base = self.remedy_outcomes["as given"].verdict
        return {n: {"verdict": o.verdict, "collapsed_fraction": float(np.mean(o.collapsed)),
                    "learned_fraction": float(np.mean(o.learned)), "val_loss": float(np.nanmean(o.final_val_loss)),
                    "changes_outcome": o.verdict != base} for n, o in self.remedy_outcomes.items()}

    def to_json(self) -> dict:
        out = {"collapsed": self.collapsed, "checks": self.checks, "likely_causes": self.likely_causes,
               "thresholds": self.thresholds}
        if self.remedies is not None:
            out["remedies"] = self.remedies
        return out


def likely_causes(checks: Mapping[str, dict]) -> list[str]:
    """Causes (from :data:`CAUSES`) that the checks' statuses point to, most direct first."""
    causes = []
    direct = {"vanishing_gradients": "vanishing_gradients", "exploding_gradients": "exploding_gradients",
              "gate_saturation": "gate_saturation", "dead_units": "dead_units", "weight_norms": "over_regularization",
              "loss_plateau": "loss_plateau"}
    for check, cause in direct.items():
        if checks.get(check, {}).get("status") == "fail":
            causes.append(cause)
    lr = checks.get("learning_rate", {})
    if lr.get("status") == "fail":
        causes.append("learning_rate_too_high" if lr.get("direction") == "too_high" else "learning_rate_too_low")
    data = checks.get("data_variability", {})
    problems = " ".join(data.get("problems", []))
    if data.get("status") == "fail" or data.get("label_shuffle_control") == "no difference":
        causes.append("no_signal_in_data")
    if "sequences (fewer than" in problems:
        causes.append("too_little_data")
    return list(dict.fromkeys(causes))


def check_head_fits(output: str, width: int, task: Task) -> None:
    """ValueError, naming the head and the targets, unless a head with output function ``output`` and ``width``
    outputs can be judged against ``task.y``: the widths agree, softmax has >= 2 outputs and targets that are rows
    of class probabilities, sigmoid has targets in [0, 1]; a linear head takes any targets."""
    if output == "softmax" and width < 2:
        raise ValueError(f"a softmax head needs at least 2 outputs; this head has {width} (the softmax of one logit "
                         f"is always 1): use a sigmoid head for 0/1 labels y (N,), or a linear one for regression")
    if width != task.output_size:
        hint = "; give y as one-hot rows (N, k) for a softmax head" if task.kind == "binary" and width > 1 else ""
        raise ValueError(f"the head has {width} outputs but y has {task.output_size} (y shape {task.y.shape}){hint}")
    y = task.y
    if output == "sigmoid" and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"a sigmoid head takes targets in [0, 1]; y ({task.kind}) spans [{y.min():g}, {y.max():g}]: "
                         f"use a linear head for regression targets")
    if output == "softmax" and (y.min() < 0 or not np.allclose(y.sum(1), 1, atol=1e-5)):
        raise ValueError(f"a softmax head takes rows of class probabilities (>= 0, summing to 1, e.g. one-hot); "
                         f"y ({task.kind}, shape {y.shape}) has rows summing to [{y.sum(1).min():g}, "
                         f"{y.sum(1).max():g}] and values from {y.min():g}: use a linear head for regression targets")


def diagnose_model(model: Model, task: Task, *, thresholds: Mapping[str, float] | None = None) -> Diagnosis:
    """Run every static check on ``model`` with the data of ``task``.

    Args:
      model: any stack of LSTM and GRU layers, with or without a head; the activations and the head's output
        function are the model's.
      task: the data to judge it on.
      thresholds: overrides of :data:`THRESHOLDS`.

    Raises:
      ValueError: an unknown or out-of-range threshold (:func:`check_thresholds`), fewer than 2 sequences, a model whose input or head width does not fit the data, or a head whose
        output function does not fit the targets (softmax needs >= 2 outputs and rows of class probabilities,
        sigmoid targets in [0, 1]).
    """
    t = check_thresholds(thresholds)
    if task.n < 2:
        raise ValueError(f"diagnose needs at least 2 sequences to measure a spread; the data has {task.n} "
                         f"(X shape {task.X.shape})")
    if model.input_size != task.input_size:
        raise ValueError(f"the weights take {model.input_size} input features but the data X has "
                         f"{task.input_size} (X shape {task.X.shape})")
    if model.head is not None:
        check_head_fits(model.head.output, model.output_size, task)
    with jax.numpy_dtype_promotion("standard"):
        model = jax.tree.map(jnp.asarray, model)
        profiles = layer_profiles(model, task.X)
        stats = gate_statistics(model, task.X)
        logits, pred = _outputs(model, task.X)
        collapse = check_output_collapse(model, task, logits, pred, t=t)
    gradients = {label: check_gradients(profile, t=t) for label, profile in profiles.items()}
    vanishing_layer, vanishing = _worst({k: v[0] for k, v in gradients.items()}, "log10_norm_at_lag_T_minus_1", -1)
    _, exploding = _worst({k: v[1] for k, v in gradients.items()}, "max_log10_norm", 1)
    _, saturation = _worst({label: check_saturation(s, t=t) for label, s in stats.items()},
                           "largest_fraction_saturated", 1)
    checks = {
        "output_collapse": collapse,
        "vanishing_gradients": vanishing,
        "exploding_gradients": exploding,
        "gate_saturation": saturation,
        "dead_units": check_dead_units(stats, t=t),
        "weight_norms": check_weight_norms(model, t=t),
        "data_variability": check_data(task, t=t),
    }
    evidence = Evidence(lag_profile=profiles[vanishing_layer], gates=stats, predictions=pred,
                        layer_profiles=profiles, targets=np.asarray(task.y),
                        output=None if model.head is None else model.head.output,
                        activations={label: layer.activation for label, _, layer in diagnosed_layers(model)})
    return Diagnosis(collapse["status"] == "fail", checks, likely_causes(checks), t, evidence)
