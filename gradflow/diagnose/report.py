"""The diagnosis as a readable report: markdown with figures, a terminal summary, one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gradflow.diagnose.checks import Diagnosis  # noqa: E402
from gradflow.plot.profiles import CMAP, STYLE, _save  # noqa: E402
from gradflow.flow.saturation import GATE_NAMES  # noqa: E402

MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v[:12]) + (" ...]" if len(v) > 12 else "]")
    return str(v)


def summary(d: Diagnosis) -> str:
    """A few lines for the terminal."""
    lines = [f"collapsed: {'yes' if d.collapsed else 'no'}"
             f" (prediction spread {d.checks['output_collapse']['spread_ratio']:.3g} of the target spread)"]
    for name, check in d.checks.items():
        lines.append(f"  {MARK[check['status']]:<5} {name}")
    lines.append("likely causes: " + (", ".join(d.likely_causes) if d.likely_causes else "none found"))
    return "\n".join(lines)


def to_json(d: Diagnosis) -> str:
    return json.dumps(_clean(d.to_json()), default=_jsonable, allow_nan=False)


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(type(v).__name__)


def _clean(obj):
    """NaN and infinities as strings, so the JSON stays standard."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return "nan" if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def plot_lag_profile(d: Diagnosis, path: Path) -> list[Path]:
    profile = d.extras["profile"]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 2.8), constrained_layout=True)
        ax.plot(np.arange(1, profile.size + 1), profile, color=plt.get_cmap(CMAP)(0.15))
        ax.axhline(-d.thresholds["vanishing_decades"], color="0.5", ls="--", lw=0.8, label="vanishing threshold")
        ax.set_xlabel("lag $T - t$ (steps)")
        ax.set_ylabel(r"$\log_{10}\,\|\partial h_T/\partial h_t\|_F$")
        ax.legend(frameon=False)
        ax.grid(alpha=0.3, lw=0.5)
        return _save(fig, path)


def plot_gates(d: Diagnosis, path: Path) -> list[Path]:
    values = d.extras["gates"]["values"]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(8.0, 2.2), constrained_layout=True, sharey=True)
        for ax, gate in zip(axes, GATE_NAMES):
            v = values[gate].ravel()
            ax.hist(v, bins=40, color=plt.get_cmap(CMAP)(0.3))
            ax.set_title(f"{gate} gate" if gate != "cell" else "candidate g")
            ax.set_yscale("log")
        axes[0].set_ylabel("count (steps x units x inputs)")
        return _save(fig, path)


def plot_predictions(d: Diagnosis, path: Path) -> list[Path]:
    pred = np.asarray(d.extras["predictions"]).reshape(len(d.extras["predictions"]), -1)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 2.8), constrained_layout=True)
        ax.hist(pred[:, 0] if pred.shape[1] == 1 else pred.max(1), bins=40, color=plt.get_cmap(CMAP)(0.6))
        ax.set_xlabel("prediction" if pred.shape[1] == 1 else "largest class probability")
        ax.set_ylabel("inputs")
        return _save(fig, path)


def write_report(d: Diagnosis, directory: str | Path, *, title: str = "gradflow diagnosis") -> Path:
    """``report.md`` with the checks, evidence, causes and figures, plus ``diagnosis.json``, in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = plot_lag_profile(d, directory / "lag_profile") + plot_gates(d, directory / "gate_saturation")
    figures += plot_predictions(d, directory / "predictions")
    for extra in d.extras.get("figures", []):
        figures += extra(directory)
    lines = [f"# {title}", "", f"**Collapsed: {'yes' if d.collapsed else 'no'}.** Likely causes: "
             + (", ".join(f"`{c}`" for c in d.likely_causes) if d.likely_causes else "none found") + ".", ""]
    lines += ["| check | status | evidence |", "|---|---|---|"]
    for name, check in d.checks.items():
        evidence = "; ".join(f"{k}: {_value(v)}" for k, v in check.items() if k not in ("status", "curves"))
        lines.append(f"| `{name}` | {MARK[check['status']]} | {evidence} |")
    lines += [""] + d.extras.get("markdown", []) + [""]
    for png in (p for p in figures if p.suffix == ".png"):
        lines.append(f"![{png.stem}]({png.name})")
    lines += ["", "Thresholds: " + ", ".join(f"{k} = {v:g}" for k, v in d.thresholds.items()), ""]
    path = directory / "report.md"
    path.write_text("\n".join(lines))
    (directory / "diagnosis.json").write_text(json.dumps(_clean(d.to_json()), indent=2, default=_jsonable) + "\n")
    return path
