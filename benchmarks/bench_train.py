r"""Training throughput: vmapped training of V variants against a Python loop over them and one variant alone.

What is measured
----------------
The recall task (T = 20, one feature, 512 training sequences), an LSTM with H = 32 and a sigmoid head,
Adam, minibatches of 32, ``--steps`` steps (default 100), via :func:`gradflow.training.train.train_variants`.
Variants differ in forget bias, learning rate and seed. For V = 1, 16 and 256:

- ``vmapped``: one compiled call training all V variants (``train_variants`` on (V,) settings);
- ``loop``: a Python loop calling the compiled one-variant program V times;
- ``one``: the one-variant program once (the cost one variant alone has).

Each JAX call is compiled first (compile time reported on its own), then called once as a warm-up and
``--repeats`` times with ``block_until_ready`` (the loop at V = 256 is timed once: it is the slow
peer). Throughput is variant-steps per second; the headline ratio is the time of V = 256 vmapped over
the time of one variant alone (256 would mean no gain from batching). FLOPs: each variant-step runs a
forward and backward pass of the LSTM over a minibatch, about ``3 * 2 * B * T * 4H (D + H)`` multiply-add
FLOPs, reported as a fraction of the machine's measured float32 matmul rate.

Writes ``bench_train.json`` and ``bench_train.md`` to ``--out`` (default ``results/bench``).
``--quick``: tiny sizes, for the tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, measure_matmul_rate, run_metadata, time_calls, write_results  # noqa: E402

from gradflow.data.tasks import recall_task, split  # noqa: E402
from gradflow.training.train import TrainGrid, TrainSpec, settings_arrays, train_data, train_variants  # noqa: E402


def settings(V: int) -> dict:
    grid = TrainGrid(forget_bias=np.linspace(-1, 2, V), learning_rate=[3e-3])
    values = grid.values()
    values["seed"] = np.arange(V, dtype=np.uint32)
    return settings_arrays(values)


def compiled(spec, arrays, data):
    start = time.perf_counter()
    fn = jax.jit(train_variants, static_argnums=0).lower(spec, arrays, data).compile()
    return fn, time.perf_counter() - start


def flops_per_variant_step(spec: TrainSpec) -> float:
    return 3 * 2 * spec.batch_size * spec.seq_len * 4 * spec.hidden_size * (spec.input_size + spec.hidden_size)


def run(sizes, steps, repeats, quick) -> dict:
    task = recall_task(128 if quick else 640, seq_len=8 if quick else 20, seed=0)
    train, val = split(task, validation=0.2)
    spec = TrainSpec.for_task(train, hidden_size=8 if quick else 32, steps=steps, batch_size=32, checkpoints=1,
                              grad_probe=1)
    data = train_data(train, val)
    one_arrays = settings(1)
    one_fn, one_compile = compiled(spec, one_arrays, data)
    one = time_calls(lambda: one_fn(one_arrays, data), repeats=repeats, compile_s=one_compile)
    rows = []
    for V in sizes:
        arrays = settings(V)
        fn, compile_s = compiled(spec, arrays, data)
        vmapped = time_calls(lambda: fn(arrays, data), repeats=repeats, compile_s=compile_s)
        singles = [jax.tree.map(lambda a, i=i: a[i : i + 1], arrays) for i in range(V)]

        def loop():
            return [one_fn(s, data) for s in singles]

        looped = time_calls(loop, repeats=1 if V >= 64 else repeats)
        rows.append({
            "variants": V,
            "vmapped": vmapped.__dict__,
            "loop": looped.__dict__,
            "vmapped_variant_steps_per_s": V * steps / vmapped.median_s,
            "loop_variant_steps_per_s": V * steps / looped.median_s,
            "vmapped_over_one": vmapped.median_s / one.median_s,
            "loop_over_vmapped": looped.median_s / vmapped.median_s,
        })
        print(f"V = {V}: vmapped {vmapped.median_s:.3f} s, loop {looped.median_s:.3f} s, "
              f"one {one.median_s:.3f} s", file=sys.stderr, flush=True)
    return {"spec": spec.__dict__, "n_train": train.n, "one_variant": one.__dict__, "sizes": rows,
            "flops_per_variant_step": flops_per_variant_step(spec)}


def markdown_report(record: dict) -> str:
    meta, r = record["metadata"], record["result"]
    rate = record["matmul_rate"]["flops_per_s"]
    f = r["flops_per_variant_step"]
    spec = r["spec"]
    rows = []
    for row in r["sizes"]:
        rows.append([row["variants"], row["vmapped"]["median_s"], row["loop"]["median_s"],
                     row["vmapped_variant_steps_per_s"], row["loop_variant_steps_per_s"],
                     f"{row['vmapped_over_one']:.2f}x", f"{row['loop_over_vmapped']:.1f}x",
                     f"{100 * row['vmapped_variant_steps_per_s'] * f / rate:.1f}%"])
    return "\n".join([
        "# bench_train",
        "",
        f"Device: {meta['devices']} ({meta.get('cpu_model') or meta['platform']}, {meta['cpu_count']} cores); "
        f"jax {meta['versions']['jax']}; matmul precision {meta['matmul_precision']}; {meta['date']}. "
        f"Machine float32 matmul rate {rate / 1e9:.1f} GFLOP/s.",
        "",
        f"Recall task, T = {spec['seq_len']}, H = {spec['hidden_size']}, batch {spec['batch_size']}, "
        f"{spec['steps']} Adam steps per variant; one variant alone: {r['one_variant']['median_s']:.3f} s "
        f"(compile {r['one_variant']['compile_s']:.1f} s).",
        "",
        markdown_table(["variants", "vmapped s", "loop s", "vmapped variant-steps/s", "loop variant-steps/s",
                        "vmapped / one variant", "loop / vmapped", "fraction of matmul rate"], rows),
    ])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--out", default="results/bench", help="output directory (default: results/bench)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 100, quick 10)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3, quick 1)")
    args = parser.parse_args(argv)
    steps = args.steps or (10 if args.quick else 100)
    repeats = args.repeats or (1 if args.quick else 3)
    with jax.numpy_dtype_promotion("standard"):
        record = {
            "benchmark": "bench_train",
            "quick": args.quick,
            "metadata": run_metadata(),
            "matmul_rate": measure_matmul_rate(size=512 if args.quick else 2048),
            "result": run([1, 4] if args.quick else [1, 16, 256], steps, repeats, args.quick),
        }
    record["load_average_1min_at_end"] = os.getloadavg()[0]
    json_path, md_path = write_results(args.out, "bench_train", record, markdown_report(record))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
