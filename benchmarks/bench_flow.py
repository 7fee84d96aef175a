r"""Throughput, compile time, peak memory and deep-lag correctness of ``gradflow.lag_norms`` against two peers.

What is measured
----------------
The lag profile wrt ``h``, ``log10 ||dh_T / dh_t||_F`` for t = 0..T-1 (``c_t`` held fixed), for V model
variants at once (params with a leading variants axis, inputs ``xs`` (T, D) shared), by three methods
in the same run:

- ``gradflow``: ``gradflow.lag_norms(params, xs, wrt="h")``, the renormalised Jacobian-product engine.
- ``jax_jacrev``: the idiomatic JAX peer ``jit(vmap(jacrev(final_h)))``, where ``final_h(eps)`` unrolls
  the same cell with ``eps[t]`` (T, H) added to ``h_t`` before step t+1 consumes it (``c_t`` untouched)
  and returns ``h_T``. ``jacrev`` gives the (H, T, H) Jacobian per variant; the profile is the naive
  ``log10(sqrt(sum(J**2, axes=(0, 2))))``.
- ``torch_func``: the same perturbation function written in PyTorch (float32, same weights, all V
  variants), under ``torch.func.vmap(torch.func.jacrev(...))``; run only if torch imports. The loop
  walks ``eps.unbind(0)``: indexing ``eps[t]`` instead makes torch's backward quadratic in T.

How
---
- Sizes: V = 256, T = 256 and V = 64, T = 1024, both with H = 64, D = 8 (``--quick``: tiny sizes).
  Variants come from ``gradflow.flow.variants.init_variants`` (``init_lstm``, orthogonal scheme, vmapped)
  over a grid of forget biases (-1, 0, 1, 2) and seeds.
- Time: JAX methods are compiled with ``jax.jit(fn).lower(...).compile()`` (compile time reported on
  its own), called once as a warm-up, then ``--repeats`` times with ``block_until_ready``; the median
  and the best are reported and throughput (variant-steps per second) uses the median.
- FLOPs: each method pushes H cotangent rows back through T steps; in a generic vector-Jacobian
  product each row meets the (4H, H) recurrent kernel: 4 H^3 multiply-adds = 8 H^3 FLOPs per
  variant-step. That nominal count is used for all three methods (an engine that needs fewer, as
  gradflow's closed-form pullback may, see ``gradflow.flow.engine``, is credited with the nominal work).
  The achieved rate is divided by the machine's float32 matmul rate (best of several jitted 2048^2
  products).
- Memory: XLA's plan of the compiled executable (``memory_analysis()``: temporaries + arguments +
  outputs), and the peak RSS of each method run in a fresh subprocess, minus a baseline taken there
  after imports and input creation (the delta includes compilation). The peak is Linux's ``VmHWM``,
  reset to the baseline first; ``ru_maxrss`` cannot be used, as Linux carries it over ``exec`` from
  the parent process.
- Correctness: a deep case (forget bias -3, lag profile far below float32's range) computed in
  float32 by all three methods and in float64 by gradflow (``jax.enable_x64``).

Writes ``bench_flow.json`` (every number plus device, versions, matmul precision and date) and
``bench_flow.md`` (tables and the targets, met or not) to ``--out``. Regenerate with::

    python benchmarks/bench_flow.py
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    compile_jax,
    markdown_table,
    measure_matmul_rate,
    reset_peak_rss,
    rss_kib,
    run_json_subprocess,
    run_metadata,
    time_calls,
    write_results,
    xla_memory_bytes,
)

import gradflow  # noqa: E402
from gradflow.lstm.cell import LSTMParams, LSTMState, initial_state, lstm_step  # noqa: E402
from gradflow.flow.variants import Grid, ModelSpec, init_variants, probe_inputs  # noqa: E402

METHODS: tuple[str, ...] = ("gradflow", "jax_jacrev", "torch_func")
JAX_METHODS: tuple[str, ...] = ("gradflow", "jax_jacrev")

#: Forget biases of the timed variant grids (seeds fill the rest of V); the fastest grid axis.
FORGET_BIASES: tuple[float, ...] = (-1.0, 0.0, 1.0, 2.0)

#: Largest deviation from the float64 run, in decades, that the deep case accepts as correct.
DEEP_ATOL_DECADES = 1e-3

#: The issue's targets for gradflow against its peers.
TARGET_SPEEDUP_VS_JAX = 1.5
TARGET_MEMORY_FRACTION_VS_JAX = 0.25
TARGET_SPEEDUP_VS_TORCH = 50.0
TARGET_MATMUL_FRACTION = 0.40


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked size and the variant grid that fills it.

    Attributes:
      name: label in the outputs.
      variants: V, model variants per call.
      seq_len: T.
      hidden_size: H.
      input_size: D.
      forget_biases: forget-bias axis of the grid; seeds 0, 1, ... fill V.
      weight_scale: gain of both kernels.
    """

    name: str
    variants: int
    seq_len: int
    hidden_size: int
    input_size: int
    forget_biases: tuple[float, ...] = FORGET_BIASES
    weight_scale: float = 1.0

    def __post_init__(self):
        if self.variants % len(self.forget_biases):
            raise ValueError(f"variants={self.variants} must be a multiple of {len(self.forget_biases)} forget biases")

    @property
    def flops_per_variant_step(self) -> int:
        """8 H^3: H cotangent rows, each through the (4H, H) recurrent kernel."""
        return 8 * self.hidden_size**3


CASES: tuple[Case, ...] = (
    Case("V256_T256", variants=256, seq_len=256, hidden_size=64, input_size=8),
    Case("V64_T1024", variants=64, seq_len=1024, hidden_size=64, input_size=8),
)
QUICK_CASES: tuple[Case, ...] = (
    Case("V8_T32", variants=8, seq_len=32, hidden_size=16, input_size=4),
)
#: Deep cases (full and quick): every lag profile falls far below float32's range (1e-38) at large lags.
DEEP_CASE = Case(
    "deep_fb-3", variants=4, seq_len=256, hidden_size=64, input_size=8, forget_biases=(-3.0,)
)
QUICK_DEEP_CASE = Case(
    "deep_fb-3", variants=2, seq_len=64, hidden_size=16, input_size=4, forget_biases=(-3.0,), weight_scale=0.5,
)


def case_inputs(case: Case, *, dtype=jnp.float32) -> tuple[LSTMParams, jax.Array]:
    """The case's variant parameters (leading axis V, forget bias fastest) and shared probe inputs (T, D)."""
    spec = ModelSpec(case.input_size, case.hidden_size, case.seq_len)
    grid = Grid(
        seed=range(case.variants // len(case.forget_biases)),
        forget_bias=case.forget_biases,
        weight_scale=[case.weight_scale],
    )
    params = jax.jit(init_variants, static_argnums=0, static_argnames="dtype")(spec, grid.values(), dtype=dtype)
    return params, probe_inputs(spec, dtype=dtype)


def gradflow_lag_norms(params: LSTMParams, xs: jax.Array) -> jax.Array:
    """gradflow's lag profiles (V, T), by lag."""
    return gradflow.lag_norms(params, xs, wrt="h")


def _jacrev_lag_norms_one(params: LSTMParams, xs: jax.Array) -> jax.Array:
    """One variant's lag profile (T,), by lag, from the full (H, T, H) Jacobian of h_T against perturbations of h_t."""

    def final_h(eps):
        def body(state, inputs):
            x, e = inputs
            return lstm_step(params, LSTMState(state.h + e, state.c), x), None

        state, _ = jax.lax.scan(body, initial_state(params), (xs, eps))
        return state.h

    jacobian = jax.jacrev(final_h)(jnp.zeros((xs.shape[0], params.hidden_size), xs.dtype))
    return jnp.log10(jnp.sqrt(jnp.sum(jacobian**2, axis=(0, 2))))[::-1]


def jacrev_lag_norms(params: LSTMParams, xs: jax.Array) -> jax.Array:
    """The idiomatic JAX peer: ``vmap(jacrev(...))`` over variants, lag profiles (V, T)."""
    return jax.vmap(_jacrev_lag_norms_one, in_axes=(0, None))(params, xs)


def import_torch():
    """The torch module, or None where it does not import."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def torch_inputs(params: LSTMParams, xs: jax.Array) -> tuple[Any, ...]:
    """The variants' (W, U, b) and the inputs as float32 torch tensors."""
    torch = importlib.import_module("torch")
    W, U, b = (torch.from_numpy(np.array(a, np.float32)) for a in params)
    return W, U, b, torch.from_numpy(np.array(xs, np.float32))


def torch_lag_norms(W, U, b, xs):
    """The torch.func peer: ``vmap(jacrev(final_h))`` over variants, lag profiles (V, T) as a torch tensor."""
    torch = importlib.import_module("torch")
    from torch.func import jacrev, vmap

    T, H = xs.shape[0], U.shape[-2]

    def final_h(eps, W, U, b):
        h = torch.zeros(H, dtype=xs.dtype)
        c = torch.zeros(H, dtype=xs.dtype)
        for x, e in zip(xs.unbind(0), eps.unbind(0)):
            z = x @ W + (h + e) @ U + b
            z_i, z_f, z_g, z_o = z.split(H)
            c = torch.sigmoid(z_f) * c + torch.sigmoid(z_i) * torch.tanh(z_g)
            h = torch.sigmoid(z_o) * torch.tanh(c)
        return h

    def one(W, U, b):
        jacobian = jacrev(final_h)(torch.zeros(T, H, dtype=xs.dtype), W, U, b)
        return torch.log10(torch.sqrt(torch.sum(jacobian**2, dim=(0, 2)))).flip(0)  # by lag, as gradflow

    return vmap(one)(W, U, b)


JAX_FUNCTIONS = {"gradflow": gradflow_lag_norms, "jax_jacrev": jacrev_lag_norms}


def time_method(method: str, case: Case, params: LSTMParams, xs: jax.Array, repeats: int) -> dict[str, Any]:
    """Compile time, run times, throughput and XLA memory of one method on one case."""
    if method in JAX_FUNCTIONS:
        compiled, compile_s = compile_jax(JAX_FUNCTIONS[method], params, xs)
        timing = time_calls(lambda: compiled(params, xs), repeats=repeats, compile_s=compile_s)
        memory = xla_memory_bytes(compiled)
    else:
        args = torch_inputs(params, xs)
        timing = time_calls(lambda: torch_lag_norms(*args), repeats=repeats)
        memory = None
    variant_steps_per_s = case.variants * case.seq_len / timing.median_s
    return {
        **dataclasses.asdict(timing),
        "variant_steps_per_s": variant_steps_per_s,
        "flops_per_s": variant_steps_per_s * case.flops_per_variant_step,
        "xla_memory": memory,
    }


def rss_probe(method: str, case: Case) -> dict[str, Any]:
    """Peak RSS of one compile-and-run of ``method`` in this (fresh) process, in MiB above a baseline.

    The baseline is the resident set after imports and input creation; the peak is reset to it
    just before the method is compiled and run.
    """
    params, xs = case_inputs(case)
    jax.block_until_ready((params, xs))
    if method in JAX_FUNCTIONS:
        baseline = rss_kib()["rss"]
        reset_peak_rss()
        compiled, _ = compile_jax(JAX_FUNCTIONS[method], params, xs)
        compile_delta = (rss_kib()["peak"] - baseline) / 1024
        jax.block_until_ready(compiled(params, xs))
    else:
        args = torch_inputs(params, xs)
        baseline = rss_kib()["rss"]
        reset_peak_rss()
        compile_delta = None
        torch_lag_norms(*args)
    return {
        "baseline_mib": baseline / 1024,
        "peak_delta_after_compile_mib": compile_delta,
        "peak_delta_mib": (rss_kib()["peak"] - baseline) / 1024,
    }


def measure_peak_rss(method: str, case_index: int, quick: bool) -> dict[str, Any]:
    """:func:`rss_probe` of ``method`` on case ``case_index`` run in a fresh Python process."""
    argv = [str(Path(__file__).resolve()), "--rss-probe", method, str(case_index)] + (["--quick"] if quick else [])
    return run_json_subprocess(argv)


def count_neg_inf(profile) -> int:
    """Number of ``-inf`` entries."""
    return int(np.sum(np.isneginf(np.asarray(profile))))


def check_deep_case(case: Case, with_torch: bool) -> dict[str, Any]:
    """gradflow in float32 against gradflow in float64, and how many ``-inf`` entries each method returns."""
    params, xs = case_inputs(case)
    profiles = {
        "gradflow": np.asarray(gradflow_lag_norms(params, xs)),
        "jax_jacrev": np.asarray(jax.jit(jacrev_lag_norms)(params, xs)),
    }
    if with_torch:
        profiles["torch_func"] = torch_lag_norms(*torch_inputs(params, xs)).numpy()
    with jax.enable_x64(True):
        params64 = LSTMParams(*(jnp.asarray(a, jnp.float64) for a in params))
        reference = np.asarray(gradflow_lag_norms(params64, jnp.asarray(xs, jnp.float64)))
    gradflow_finite = bool(np.all(np.isfinite(profiles["gradflow"])))
    max_error = float(np.max(np.abs(profiles["gradflow"] - reference)))
    peers = [m for m in profiles if m != "gradflow"]
    peers_neg_inf = all(count_neg_inf(profiles[m]) > 0 for m in peers)
    return {
        "case": dataclasses.asdict(case),
        "entries": int(reference.size),
        "float64_min_log10_norm": float(np.min(reference)),
        "float64_entries_below_1e-38": int(np.sum(reference < -38)),
        "neg_inf_entries": {m: count_neg_inf(p) for m, p in profiles.items()},
        "nonfinite_entries": {m: int(np.sum(~np.isfinite(p))) for m, p in profiles.items()},
        "gradflow_max_abs_error_decades": max_error,
        "tolerance_decades": DEEP_ATOL_DECADES,
        "met": gradflow_finite and max_error <= DEEP_ATOL_DECADES and peers_neg_inf,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, None where either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def compare_to_gradflow(results: dict[str, dict[str, Any]]) -> None:
    """Add, to each method's result, gradflow's throughput and memory divided by that method's."""
    ours = results["gradflow"]

    def xla_total(result):
        return result["xla_memory"]["total_bytes"] if result["xla_memory"] else None

    def rss_delta(result):
        return result["peak_rss"]["peak_delta_mib"] if result["peak_rss"] else None

    for result in results.values():
        result["gradflow_throughput_ratio"] = ratio(ours["variant_steps_per_s"], result["variant_steps_per_s"])
        result["gradflow_xla_memory_ratio"] = ratio(xla_total(ours), xla_total(result))
        result["gradflow_rss_ratio"] = ratio(rss_delta(ours), rss_delta(result))


def evaluate_targets(cases: list[dict[str, Any]], deep: dict[str, Any], matmul_rate: float) -> list[dict[str, Any]]:
    """Each of the issue's targets with the measured value and whether it is met."""
    targets = []
    longest = max(cases, key=lambda c: c["case"]["seq_len"])
    T = longest["case"]["seq_len"]
    jax_peer = longest["methods"]["jax_jacrev"]
    speedup = jax_peer["gradflow_throughput_ratio"]
    memory = {"XLA plan": jax_peer["gradflow_xla_memory_ratio"], "peak RSS": jax_peer["gradflow_rss_ratio"]}
    targets.append({
        "target": f">= {TARGET_SPEEDUP_VS_JAX}x the JAX peer's throughput at T = {T}",
        "value": f"{speedup:.2f}x",
        "met": speedup >= TARGET_SPEEDUP_VS_JAX,
    })
    targets.append({
        "target": f"<= {TARGET_MEMORY_FRACTION_VS_JAX} of the JAX peer's peak memory at T = {T} "
                  "(XLA plan and peak RSS)",
        "value": ", ".join(f"{name} {fraction:.3f}" if fraction is not None else f"{name} not measurable"
                           for name, fraction in memory.items()),
        "met": all(fraction is not None and fraction <= TARGET_MEMORY_FRACTION_VS_JAX for fraction in memory.values()),
    })
    torch_speedups = {c["case"]["name"]: c["methods"]["torch_func"]["gradflow_throughput_ratio"]
                      for c in cases if "torch_func" in c["methods"]}
    if torch_speedups:
        targets.append({
            "target": f">= {TARGET_SPEEDUP_VS_TORCH:g}x the torch.func peer's throughput (per variant-step)",
            "value": ", ".join(f"{name} {s:.1f}x" for name, s in torch_speedups.items()),
            "met": all(s >= TARGET_SPEEDUP_VS_TORCH for s in torch_speedups.values()),
        })
    fractions = {c["case"]["name"]: c["methods"]["gradflow"]["flops_fraction"] for c in cases}
    targets.append({
        "target": f">= {TARGET_MATMUL_FRACTION:.0%} of the measured float32 matmul rate "
                  f"({matmul_rate / 1e9:.0f} GFLOP/s)",
        "value": ", ".join(f"{name} {f:.1%}" for name, f in fractions.items()),
        "met": all(f >= TARGET_MATMUL_FRACTION for f in fractions.values()),
    })
    targets.append({
        "target": "finite, correct values (float64 agreement) where both peers return -inf",
        "value": (f"gradflow max error {deep['gradflow_max_abs_error_decades']:.2g} decades; -inf entries "
                  + ", ".join(f"{m} {n}" for m, n in deep["neg_inf_entries"].items())),
        "met": deep["met"],
    })
    return targets


def markdown_report(record: dict[str, Any]) -> str:
    """The results as markdown: run metadata, one table per case, the correctness check and the targets."""
    meta, matmul, git = record["metadata"], record["matmul_rate"], record["metadata"]["git"]
    versions = ", ".join(f"{name} {v}" for name, v in meta["versions"].items() if v)
    lines = [
        "# bench_flow: gradflow.lag_norms (wrt h) against jit(vmap(jacrev)) and torch.func",
        "",
        f"Regenerate with `python benchmarks/bench_flow.py{' --quick' if record['quick'] else ''}`.",
        "",
        f"- date: {meta['date']}; devices: {', '.join(meta['devices'])}; CPU: {meta['cpu_model']} "
        f"({meta['cpu_count']} cores); python {meta['python']}; {versions}",
        f"- matmul precision: {meta['matmul_precision']} ({meta['matmul_precision_note']})",
        f"- measured float32 matmul rate: {matmul['flops_per_s'] / 1e9:.1f} GFLOP/s "
        f"(best of {matmul['size']}x{matmul['size']} jitted products)",
        f"- load average (1 min) at start and end: {meta['load_average_1min']:.2f}, "
        f"{record['load_average_1min_at_end']:.2f} (other processes on the machine slow every method)",
        f"- git: {git['commit'][:12] if git else '-'}; modified tracked files: "
        f"{', '.join(git['modified_files']) if git and git['modified_files'] else 'none'}",
        f"- FLOPs counted: nominal 8 H^3 per variant-step (a generic VJP through the (4H, H) kernel) for "
        f"every method, also where an engine executes fewer; repeats: {record['repeats']}; "
        "throughput and matmul fraction use the median; ratios are gradflow / method "
        "(throughput: > 1 means gradflow is faster; memory: < 1 means gradflow uses less)",
        "",
    ]
    headers = ["method", "compile s", "first call s", "median s", "best s", "variant-steps/s",
               "matmul fraction", "XLA plan MiB", "peak RSS delta MiB", "gradflow throughput ratio",
               "gradflow XLA memory ratio", "gradflow RSS ratio"]
    for case in record["cases"]:
        c = case["case"]
        lines += [f"## {c['name']}: V = {c['variants']}, T = {c['seq_len']}, H = {c['hidden_size']}, "
                  f"D = {c['input_size']}", ""]
        rows = []
        for method, r in case["methods"].items():
            xla_mib = r["xla_memory"]["total_bytes"] / 2**20 if r["xla_memory"] else None
            rss_mib = r["peak_rss"]["peak_delta_mib"] if r["peak_rss"] else None
            rows.append([method, r["compile_s"], r["first_call_s"], r["median_s"], r["best_s"],
                         r["variant_steps_per_s"], r["flops_fraction"], xla_mib, rss_mib,
                         r["gradflow_throughput_ratio"], r["gradflow_xla_memory_ratio"], r["gradflow_rss_ratio"]])
        lines += [markdown_table(headers, rows), ""]
    deep = record["deep_case"]
    d = deep["case"]
    lines += [
        f"## Correctness at depth: V = {d['variants']}, T = {d['seq_len']}, H = {d['hidden_size']}, "
        f"forget bias {d['forget_biases'][0]:g}, weight scale {d['weight_scale']:g}",
        "",
        f"float64 gradflow reaches log10 norm {deep['float64_min_log10_norm']:.1f}; "
        f"{deep['float64_entries_below_1e-38']} of {deep['entries']} entries lie below 1e-38. "
        f"float32 gradflow deviates from it by at most {deep['gradflow_max_abs_error_decades']:.2g} decades "
        f"(tolerance {deep['tolerance_decades']:g}).",
        "",
        markdown_table(["method", "-inf entries", "non-finite entries"],
                       [[m, n, deep["nonfinite_entries"][m]] for m, n in deep["neg_inf_entries"].items()]),
        "",
        "## Targets",
        "",
        markdown_table(["target", "measured", "met"],
                       [[t["target"], t["value"], "met" if t["met"] else "not met"] for t in record["targets"]]),
    ]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a smoke run (~25 s on 2 cores, ~10 s without torch and RSS)"
    )
    parser.add_argument("--out", default="results/bench", help="output directory (default: results/bench)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch.func peer")
    parser.add_argument("--no-rss", action="store_true",
                        help="skip the peak-RSS subprocesses (the XLA memory plan is still recorded)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls after the warm-up (default 5, quick 2)")
    parser.add_argument("--rss-probe", nargs=2, metavar=("METHOD", "CASE_INDEX"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cases = QUICK_CASES if args.quick else CASES
    if args.rss_probe:
        method, index = args.rss_probe
        print(json.dumps(rss_probe(method, cases[int(index)])))
        return
    repeats = args.repeats or (2 if args.quick else 5)
    with_torch = not args.no_torch and import_torch() is not None
    methods = [m for m in METHODS if with_torch or m in JAX_METHODS]
    matmul = measure_matmul_rate(size=512 if args.quick else 2048)
    metadata = run_metadata()
    if with_torch:
        metadata["torch_threads"] = import_torch().get_num_threads()

    case_records = []
    for index, case in enumerate(cases):
        params, xs = case_inputs(case)
        results = {}
        for method in methods:
            print(f"{case.name}: {method}", file=sys.stderr, flush=True)
            result = time_method(method, case, params, xs, repeats)
            result["flops_fraction"] = result["flops_per_s"] / matmul["flops_per_s"]
            result["peak_rss"] = None if args.no_rss else measure_peak_rss(method, index, args.quick)
            results[method] = result
        compare_to_gradflow(results)
        case_records.append({"case": dataclasses.asdict(case), "methods": results})

    print("deep case", file=sys.stderr, flush=True)
    deep = check_deep_case(QUICK_DEEP_CASE if args.quick else DEEP_CASE, with_torch)
    record = {
        "benchmark": "bench_flow",
        "quick": args.quick,
        "repeats": repeats,
        "metadata": metadata,
        "load_average_1min_at_end": os.getloadavg()[0],
        "matmul_rate": matmul,
        "cases": case_records,
        "deep_case": deep,
        "targets": evaluate_targets(case_records, deep, matmul["flops_per_s"]),
    }
    json_path, md_path = write_results(args.out, "bench_flow", record, markdown_report(record))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
