"""``gradflow info DIR``: a plain-text summary of a results store, read from the store alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gradflow.sweep.layout import OutputLayout
from gradflow.sweep.results import decode_attrs, open_results
from gradflow.sweep.store import progress_of


def _runs(directory: Path, config_hash: str) -> list[dict]:
    """This store's process runs from ``runs.jsonl`` (lines of other configs or torn lines are skipped)."""
    log = OutputLayout(directory).run_log
    if not log.is_file():
        return []
    runs = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("config_hash") == config_hash:
            runs.append(record)
    return runs


def describe_store(directory: str | Path) -> str:
    """Config hash, progress, dimensions, variables (with finite counts), environment and runs of a store."""
    directory = Path(directory)
    ds = open_results(directory)
    done, total = progress_of(directory)
    attrs = decode_attrs(dict(ds.attrs))
    env = attrs.get("environment", {})
    lines = [
        f"{OutputLayout(directory).store}",
        f"  config hash   {ds.attrs.get('config_hash', '?')[:16]}",
        f"  progress      {done}/{total} work chunks done" + ("" if done == total else " (incomplete: rerun to resume)"),
        "  dimensions    " + ", ".join(f"{d} ({n})" for d, n in ds.sizes.items()),
    ]
    for name in ds.coords:
        values = ds[name].values
        shown = ", ".join(f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in values[:6])
        lines.append(f"    {name:<13}{shown}{' ...' if len(values) > 6 else ''}")
    lines.append("  variables")
    for name, var in ds.data_vars.items():
        values = var.values
        if values.dtype == bool:
            lines.append(f"    {name:<26}true for {int(values.sum())} of {values.size} variants")
        else:
            finite = values[np.isfinite(values)]
            summary = f"median {np.median(finite):.4g}, range [{finite.min():.4g}, {finite.max():.4g}]" if finite.size else "no finite values"
            lines.append(f"    {name:<26}{summary}; {finite.size}/{values.size} finite")
    versions = env.get("versions", {})
    lines += [
        f"  computed on   {env.get('device_kind', '?')} ({env.get('backend', '?')}), {len(env.get('devices', []))} device(s), "
        f"matmul precision {ds.attrs.get('matmul_precision', '?')}",
        "  versions      " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]
    runs = _runs(directory, ds.attrs.get("config_hash"))
    if runs:
        seconds = sum(r["seconds"] for r in runs)
        lines.append(f"  runs          {len(runs)} process run(s), {sum(r['computed'] for r in runs)} chunks computed "
                     f"in {seconds:.1f} s of process time")
    return "\n".join(lines)
