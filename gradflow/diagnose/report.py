"""The diagnosis as a readable report: markdown (with the figures it is given), a terminal summary, one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gradflow.diagnose.checks import Diagnosis, RemedyOutcome

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


def remedy_table(outcomes: dict[str, RemedyOutcome]) -> list[str]:
    """The remedies trained side by side, as markdown lines: verdict, fractions, losses, whether it changes the outcome."""
    base = outcomes["as given"].verdict
    lines = ["## Remedies, trained side by side", "",
             "| remedy | verdict (majority of seeds) | collapsed | learned | val loss | val accuracy | changes the outcome |",
             "|---|---|---|---|---|---|---|"]
    for name, o in outcomes.items():
        lines.append(f"| {name} | {o.verdict} | {np.mean(o.collapsed):.0%} | {np.mean(o.learned):.0%} | "
                     f"{np.nanmean(o.final_val_loss):.3f} | {np.nanmean(o.val_accuracy):.3f} | "
                     f"{'-' if name == 'as given' else ('yes' if o.verdict != base else 'no')} |")
    return lines


def write_report(d: Diagnosis, directory: str | Path, *, figures: list[Path] = (),
                 title: str = "gradflow diagnosis") -> Path:
    """``report.md`` with the checks, evidence, causes and ``figures`` (files in ``directory``, drawn by
    :func:`gradflow.plot.diagnosis.plot_diagnosis`), plus ``diagnosis.json``, in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", f"**Collapsed: {'yes' if d.collapsed else 'no'}.** Likely causes: "
             + (", ".join(f"`{c}`" for c in d.likely_causes) if d.likely_causes else "none found") + ".", ""]
    lines += ["| check | status | evidence |", "|---|---|---|"]
    for name, check in d.checks.items():
        evidence = "; ".join(f"{k}: {_value(v)}" for k, v in check.items() if k not in ("status", "curves"))
        lines.append(f"| `{name}` | {MARK[check['status']]} | {evidence} |")
    lines += [""] + (remedy_table(d.remedy_outcomes) if d.remedy_outcomes else []) + [""]
    for png in (p for p in figures if p.suffix == ".png"):
        lines.append(f"![{png.stem}]({png.name})")
    lines += ["", "Thresholds: " + ", ".join(f"{k} = {v:g}" for k, v in d.thresholds.items()), ""]
    path = directory / "report.md"
    path.write_text("\n".join(lines))
    (directory / "diagnosis.json").write_text(json.dumps(_clean(d.to_json()), indent=2, default=_jsonable) + "\n")
    return path
