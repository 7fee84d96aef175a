r"""How the exact lag profile scales with the hidden size H, against ``jit(vmap(jacrev))`` and the matmul floors.

What is measured
----------------
For H = 16, 32, 64, 128, 256, 512 (T = 256, V = 4 variants, D = 8, float32, wrt ``h``), in the same run:

- ``gradflow``: ``gradflow.lag_norms(params, xs, wrt="h")``. It executes ``2 R H^2 = 2 H^3`` multiply-adds per
  variant-step (``R = H`` cotangent rows through one (2H, H) matrix per step): 4 H^3 FLOPs.
- ``jax_jacrev``: the peer of ``bench_flow.py`` (imported from there), ``jit(vmap(jacrev(final_h)))``: a
  vector-Jacobian product of H rows through the (4H, H) kernel per step, 8 H^3 FLOPs per variant-step.
- The machine's float32 matmul rate (best of jitted 2048 x 2048 products), measured at the start and at the
  end of the run; the larger is the ``peak`` rate (other processes on the machine lower either).
- The batched-matmul rate at each H: T steps of the engine's own product shape, (V, H, 2H) x (V, 2H, H), in
  a ``lax.scan`` (B rescaled by a carried scalar each step, so XLA cannot hoist the product out of the loop),
  the same loop structure as the engine without its elementwise work, and also one standalone jitted
  product (best of repeats; at small H that is dominated by the call's dispatch).

Reported per H: compile time, median time, time per variant-step, executed FLOP rate as a fraction of the
peak 2048^2 rate and of the batched-matmul rate at that H, XLA's memory plan of both methods, gradflow's
speed-up and memory ratio against the peer, the variants block the engine chose
(``gradflow.flow.engine.lag_profile_block``) and what bounds the gradflow point:

- ``matmul rate``: the engine runs at >= 75% of the in-loop batched-matmul rate (the products dominate);
- ``overhead/latency``: the gap to the batched-matmul floor is mostly the fixed per-step cost (loop
  iteration, about 15 small kernels, the sequential forward pass), estimated as the engine's time per
  variant-step at the smallest H, where the arithmetic is negligible;
- ``memory traffic``: otherwise, the gap grows with H^2: each step builds B_t (reads the 4 H^2 ``U^T``
  blocks, writes 2 H^2), copies the accumulator and reduces it, and the forward pass reads U (4 H^2)
  per step, from L3 or memory once a block of variants outgrows the L2 caches.

Figure: time per variant-step against H on log-log axes for both methods, with the FLOP floors (executed
FLOPs / peak 2048^2 rate, for each method) and the batched-matmul floor (in-loop batched rate at that H)
drawn as lines. It is redrawn from the JSON record (``--plot-only``), never recomputed to plot.

Writes ``bench_scaling.json``, ``bench_scaling.md`` and ``bench_scaling.pdf``/``.png`` to ``--out``.
Regenerate with::

    python benchmarks/bench_scaling.py              # about 2 minutes on 2 CPU cores
    python benchmarks/bench_scaling.py --quick      # H = 16, 32, 64, T = 32, V = 2: a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    compile_jax,
    markdown_table,
    measure_matmul_rate,
    run_metadata,
    time_calls,
    write_results,
    xla_memory_bytes,
)
from bench_flow import Case, case_inputs, gradflow_lag_norms, jacrev_lag_norms

from gradflow.flow.engine import lag_profile_block
from gradflow.plot.style import CATEGORICAL, paper_style, save_figure

NAME = "bench_scaling"
HIDDEN_SIZES: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
QUICK_HIDDEN_SIZES: tuple[int, ...] = (16, 32, 64)
#: Fraction of the in-loop batched-matmul rate above which a point counts as bound by the matmul rate.
MATMUL_BOUND_FRACTION = 0.75


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The run's fixed sizes: variants V, sequence length T, input size D and the hidden sizes swept."""

    variants: int
    seq_len: int
    input_size: int
    hidden_sizes: tuple[int, ...]


FULL = Sizes(variants=4, seq_len=256, input_size=8, hidden_sizes=HIDDEN_SIZES)
QUICK = Sizes(variants=2, seq_len=32, input_size=4, hidden_sizes=QUICK_HIDDEN_SIZES)


def executed_flops(method: str, H: int) -> int:
    """FLOPs per variant-step each method executes: gradflow 2 H^3 multiply-adds, the peer 4 H^3."""
    return (4 if method == "gradflow" else 8) * H**3


def batched_matmul_rates(V: int, H: int, T: int, repeats: int) -> dict[str, float]:
    """FLOP/s of (V, H, 2H) x (V, 2H, H) products: T of them in a ``lax.scan``, and one standalone call."""
    a = jax.random.normal(jax.random.key(0), (V, H, 2 * H), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (V, 2 * H, H), jnp.float32)
    flops = 4 * V * H**3

    def loop(a, b):
        def step(scale, _):
            out = a @ (b * scale)
            return jnp.ones_like(scale) + 0 * out[0, 0, 0], None  # a data dependence: nothing is hoisted

        return jax.lax.scan(step, jnp.ones((), a.dtype), None, length=T)[0]

    looped, _ = compile_jax(loop, a, b)
    in_loop = time_calls(lambda: looped(a, b), repeats=repeats)
    single, _ = compile_jax(jnp.matmul, a, b)
    alone = time_calls(lambda: single(a, b), repeats=max(repeats, 20))
    return {"in_loop_flops_per_s": T * flops / in_loop.best_s, "standalone_flops_per_s": flops / alone.best_s}


def time_method(method: str, params, xs, repeats: int) -> dict[str, Any]:
    """Compile time, timings and XLA memory plan of one method."""
    fn = gradflow_lag_norms if method == "gradflow" else jacrev_lag_norms
    compiled, compile_s = compile_jax(fn, params, xs)
    timing = time_calls(lambda: compiled(params, xs), repeats=repeats, compile_s=compile_s)
    return {**dataclasses.asdict(timing), "xla_memory": xla_memory_bytes(compiled)}


def measure_point(sizes: Sizes, H: int, repeats: int) -> dict[str, Any]:
    """Every number of one hidden size H (time per variant-step uses the median)."""
    V, T = sizes.variants, sizes.seq_len
    case = Case(f"H{H}", variants=V, seq_len=T, hidden_size=H, input_size=sizes.input_size,
                forget_biases=(0.0, 1.0)[:V] if V < 4 else (-1.0, 0.0, 1.0, 2.0))
    params, xs = case_inputs(case)
    load = os.getloadavg()[0]
    methods = {m: time_method(m, params, xs, repeats) for m in ("gradflow", "jax_jacrev")}
    for method, result in methods.items():
        result["s_per_variant_step"] = result["median_s"] / (V * T)
        result["executed_flops_per_variant_step"] = executed_flops(method, H)
        result["executed_flops_per_s"] = executed_flops(method, H) / result["s_per_variant_step"]
    return {
        "hidden_size": H,
        "variants": V,
        "seq_len": T,
        "block": lag_profile_block(V, H, H, 4),
        "load_average_1min": load,
        "batched_matmul": batched_matmul_rates(V, H, T, repeats),
        "methods": methods,
    }


def bound_by(point: dict[str, Any], fixed_s: float) -> str:
    """What limits gradflow at this point (see the module docstring for the rule)."""
    engine_s = point["methods"]["gradflow"]["s_per_variant_step"]
    floor_s = point["floors"]["batched_matmul_s"]
    if floor_s >= MATMUL_BOUND_FRACTION * engine_s:
        return "matmul rate"
    if fixed_s >= 0.5 * (engine_s - floor_s):
        return "overhead/latency"
    return "memory traffic"


def derive(record: dict[str, Any]) -> None:
    """Floors, fractions, ratios and the bound of every point, from the measured numbers."""
    peak = max(r["flops_per_s"] for r in record["matmul_rate"].values())
    record["peak_flops_per_s"] = peak
    points = record["points"]
    fixed_s = min(p["methods"]["gradflow"]["s_per_variant_step"] for p in points)
    for point in points:
        H, in_loop = point["hidden_size"], point["batched_matmul"]["in_loop_flops_per_s"]
        point["floors"] = {
            "gradflow_flop_s": executed_flops("gradflow", H) / peak,
            "jax_jacrev_flop_s": executed_flops("jax_jacrev", H) / peak,
            "batched_matmul_s": executed_flops("gradflow", H) / in_loop,
        }
        for result in point["methods"].values():
            result["fraction_of_peak"] = result["executed_flops_per_s"] / peak
            result["fraction_of_batched"] = result["executed_flops_per_s"] / in_loop
        gradflow, peer = point["methods"]["gradflow"], point["methods"]["jax_jacrev"]
        point["speedup_vs_jax_jacrev"] = peer["median_s"] / gradflow["median_s"]
        point["xla_memory_ratio_vs_jax_jacrev"] = (
            gradflow["xla_memory"]["total_bytes"] / peer["xla_memory"]["total_bytes"])
        point["bound_by"] = bound_by(point, fixed_s)


def plot(record: dict[str, Any], out: Path) -> list[Path]:
    """The log-log figure of time per variant-step against H, from the record alone."""
    points = record["points"]
    H = [p["hidden_size"] for p in points]
    us = 1e6

    def series(key):
        return [p["methods"][key]["s_per_variant_step"] * us for p in points]

    with paper_style(columns=1, aspect=1.0):
        fig, ax = plt.subplots(layout="constrained")
        ax.loglog(H, series("gradflow"), "o-", color=CATEGORICAL[0], label="gradflow (4 H$^3$ FLOPs)")
        ax.loglog(H, series("jax_jacrev"), "s-", color=CATEGORICAL[5], label="jit(vmap(jacrev)) (8 H$^3$)")
        ax.loglog(H, [p["floors"]["gradflow_flop_s"] * us for p in points], "-", color="0.3", lw=0.8,
                  label="FLOP floor, 4 H$^3$ / peak")
        ax.loglog(H, [p["floors"]["jax_jacrev_flop_s"] * us for p in points], "--", color="0.3", lw=0.8,
                  label="FLOP floor, 8 H$^3$ / peak")
        ax.loglog(H, [p["floors"]["batched_matmul_s"] * us for p in points], ":", color=CATEGORICAL[2], lw=1.4,
                  label="batched-matmul floor, 4 H$^3$ / rate(H)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(H, [str(h) for h in H])
        ax.minorticks_off()
        ax.set_xlabel("hidden size $H$")
        ax.set_ylabel(r"time per variant-step ($\mu$s)")
        meta = record["metadata"]
        ax.set_title(f"T = {points[0]['seq_len']}, V = {points[0]['variants']}, float32, "
                     f"{meta['cpu_count']} CPU cores", fontsize=8)
        fig.legend(loc="outside lower center", ncol=2, fontsize=6.5)
        return save_figure(fig, out / NAME)


def markdown_report(record: dict[str, Any]) -> str:
    """The markdown table and what bounds each point."""
    meta = record["metadata"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    rates = record["matmul_rate"]
    rows = []
    for p in record["points"]:
        g, j = p["methods"]["gradflow"], p["methods"]["jax_jacrev"]
        rows.append([
            p["hidden_size"], p["block"], g["compile_s"], g["median_s"], g["s_per_variant_step"] * 1e6,
            j["median_s"], j["s_per_variant_step"] * 1e6, p["speedup_vs_jax_jacrev"],
            g["fraction_of_peak"], g["fraction_of_batched"], j["fraction_of_peak"],
            p["batched_matmul"]["in_loop_flops_per_s"] / 1e9, p["batched_matmul"]["standalone_flops_per_s"] / 1e9,
            g["xla_memory"]["total_bytes"] / 2**20, j["xla_memory"]["total_bytes"] / 2**20,
            p["xla_memory_ratio_vs_jax_jacrev"], p["load_average_1min"], p["bound_by"],
        ])
    headers = [
        "H", "block", "gradflow compile s", "gradflow median s", "gradflow us/vstep", "jacrev median s",
        "jacrev us/vstep", "speed-up", "gradflow / peak", "gradflow / batched", "jacrev / peak",
        "batched GFLOP/s (loop)", "batched GFLOP/s (one call)", "gradflow XLA MiB", "jacrev XLA MiB",
        "memory ratio", "load (1 min)", "bound by",
    ]
    first = record["points"][0]
    lines = [
        (f"# {NAME}: exact lag profile (wrt h) against jit(vmap(jacrev)) for H = "
        f"{', '.join(str(p['hidden_size']) for p in record['points'])}"),
        "",
        (f"Regenerate with `{record['regenerate']}` (this run: {record['duration_s']:.0f} s; "
        "`--plot-only` redraws the figure from the JSON)."),
        "",
        (f"- date: {meta['date']}; devices: {', '.join(meta['devices'])}; CPU: {meta['cpu_model']} "
        f"({meta['cpu_count']} cores); python {meta['python']}; {versions}"),
        f"- matmul precision: {meta['matmul_precision']} ({meta['matmul_precision_note']})",
        (f"- float32 2048^2 matmul rate: {rates['start']['flops_per_s'] / 1e9:.1f} GFLOP/s at the start, "
        f"{rates['end']['flops_per_s'] / 1e9:.1f} at the end; peak = the larger, "
        f"{record['peak_flops_per_s'] / 1e9:.1f} GFLOP/s"),
        (f"- load average (1 min) at start and end: {meta['load_average_1min']:.2f}, "
        f"{record['load_average_1min_end']:.2f} (other processes on the machine slow every method)"),
        (f"- sizes: T = {first['seq_len']}, V = {first['variants']} variants, D = {record['sizes']['input_size']}, "
        f"float32, repeats {record['repeats']} (times are medians)"),
        ("- executed FLOPs per variant-step: gradflow 4 H^3 (2 H^3 multiply-adds: H rows through one (2H, H) "
        "matrix), jit(vmap(jacrev)) 8 H^3 (H rows through the (4H, H) kernel); fractions are executed FLOP "
        "rates over the peak 2048^2 rate and over the batched-matmul rate at that H (T products "
        "(V, H, 2H) x (V, 2H, H) in a lax.scan); speed-up = jacrev median / gradflow median; memory ratio = "
        "gradflow / jacrev XLA plan (temporaries + arguments + outputs); block = variants the engine vmaps "
        "together (`lag_profile_block`)"),
        "",
        markdown_table(headers, rows),
        "",
        f"![time per variant-step against H]({NAME}.png)",
        "",
        "## What bounds each point",
        "",
        (f"- **matmul rate**: gradflow runs at >= {MATMUL_BOUND_FRACTION:.0%} of the in-loop batched-matmul rate at "
        "that H; the (2H, H) products dominate and only a faster matmul (or fewer FLOPs) helps."),
        ("- **overhead/latency**: the gap to the batched-matmul floor is mostly the fixed per-step cost "
        "(about 15 small kernels and a loop iteration per step, and the sequential forward pass: a "
        "(1, H) x (H, 4H) product per step), taken as gradflow's time per variant-step at the smallest H "
        f"({min(p['methods']['gradflow']['s_per_variant_step'] for p in record['points']) * 1e6:.2f} us), where "
        "the arithmetic is negligible. Small products also run below the peak rate themselves."),
        ("- **memory traffic**: the gap grows with H^2: each step builds B_t from the four U_k^T blocks "
        "(reads 4 H^2, writes 2 H^2 floats per variant), copies and reduces the (H, 2H) accumulator, and the "
        "forward pass reads U (4 H^2) per step; once a block of variants outgrows the 2 MiB L2 caches these "
        "passes run from L3 or memory, which is why the engine processes fewer variants at once for large H."),
        "- The peer does twice the FLOPs and materialises the (H, T, H) Jacobian per variant (the memory column).",
    ]
    return "\n".join(lines)


def run(sizes: Sizes, repeats: int) -> dict[str, Any]:
    """Measure every hidden size; the record without the derived numbers."""
    start = time.perf_counter()
    metadata = run_metadata()
    rate_start = measure_matmul_rate()
    points = []
    for H in sizes.hidden_sizes:
        points.append(measure_point(sizes, H, repeats))
        print(f"H = {H}: done after {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    rate_end = measure_matmul_rate()
    return {
        "metadata": metadata,
        "sizes": dataclasses.asdict(sizes),
        "repeats": repeats,
        "matmul_rate": {"start": rate_start, "end": rate_end},
        "load_average_1min_end": os.getloadavg()[0],
        "points": points,
        "duration_s": time.perf_counter() - start,
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="H = 16, 32, 64, T = 32, V = 2: a smoke run")
    parser.add_argument("--out", default="results/bench", help="output directory (default results/bench)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per method (default 5, quick 1)")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure and table from the JSON in --out")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    if args.plot_only:
        record = json.loads((out / f"{NAME}.json").read_text())
    else:
        sizes = QUICK if args.quick else FULL
        record = run(sizes, args.repeats or (1 if args.quick else 5))
        record["regenerate"] = "python benchmarks/bench_scaling.py" + (" --quick" if args.quick else "")
        derive(record)
    write_results(out, NAME, record, markdown_report(record))
    for path in plot(record, out):
        print(path)


if __name__ == "__main__":
    main()
