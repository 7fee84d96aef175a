"""Shared benchmark helpers: run metadata, the machine's matmul rate, timing, peak memory, output files.

Every benchmark in this directory follows the same rules (see ``benchmarks/README.md``): compile time
is reported separately from run time, runs are timed after a warm-up call with ``block_until_ready``
and repeated (median and best reported), and each result file records the device, library versions,
matmul precision and date next to the numbers.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

#: Packages whose versions every result file records (absent ones are recorded as None).
RECORDED_PACKAGES: tuple[str, ...] = ("jax", "jaxlib", "flax", "numpy", "torch")

#: What the recorded matmul precision means on each platform.
MATMUL_PRECISION_NOTES: dict[str, str] = {
    "cpu": "on CPU, XLA runs float32 matmuls in full float32 whatever the precision setting",
    "gpu": "on GPU, the default precision runs float32 matmuls as TF32",
    "tpu": "on TPU, the default precision runs float32 matmuls as bf16 passes",
}


def cpu_model() -> str | None:
    """The CPU model name from ``/proc/cpuinfo`` (None where that file does not exist)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or None
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def package_version(name: str) -> str | None:
    """Installed version of ``name``, None if it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state() -> dict[str, Any] | None:
    """Commit of the checkout and its tracked files with uncommitted changes (None outside git)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        modified = git("diff", "--name-only", "HEAD").split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "modified_files": modified}


def run_metadata() -> dict[str, Any]:
    """Device, platform, CPU, load, versions, matmul precision, git state and date of this run."""
    backend = jax.default_backend()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "devices": [str(d) for d in jax.devices()],
        "platform": backend,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in RECORDED_PACKAGES},
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
        "matmul_precision_note": MATMUL_PRECISION_NOTES.get(backend, ""),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "git": git_state(),
    }


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of one benchmarked computation.

    Attributes:
      compile_s: compilation alone (JAX: ``lower(...).compile()``); None where nothing is compiled.
      first_call_s: the warm-up call, which follows compilation and is not counted in the repeats.
      median_s, best_s: median and minimum over the repeats.
      repeats_s: every repeat, in order.
    """

    compile_s: float | None
    first_call_s: float
    median_s: float
    best_s: float
    repeats_s: tuple[float, ...]


def time_calls(call: Callable[[], Any], *, repeats: int, compile_s: float | None = None) -> Timing:
    """Time ``call()`` once as a warm-up, then ``repeats`` times; each call waits for its result.

    Args:
      call: runs the computation and returns its result (JAX arrays are waited for with
        ``jax.block_until_ready``; anything else is taken as finished on return).
      repeats: number of timed calls after the warm-up, at least 1.
      compile_s: compile time measured separately by the caller, recorded as it is.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")

    def timed() -> float:
        start = time.perf_counter()
        jax.block_until_ready(call())
        return time.perf_counter() - start

    first = timed()
    times = tuple(timed() for _ in range(repeats))
    return Timing(compile_s, first, statistics.median(times), min(times), times)


def compile_jax(fn: Callable, *args) -> tuple[Any, float]:
    """``jax.jit(fn)`` lowered and compiled for ``args``: the executable and the seconds it took."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def xla_memory_bytes(compiled) -> dict[str, int]:
    """XLA's static memory plan of a compiled executable: temporaries, arguments, outputs and their sum."""
    stats = compiled.memory_analysis()
    sizes = {
        "temp_bytes": stats.temp_size_in_bytes,
        "argument_bytes": stats.argument_size_in_bytes,
        "output_bytes": stats.output_size_in_bytes,
    }
    sizes["total_bytes"] = sum(sizes.values())
    return sizes


def measure_matmul_rate(*, size: int = 2048, repeats: int = 7, dtype=jnp.float32) -> dict[str, float]:
    """The machine's float32 matmul rate: best of ``repeats`` jitted (size, size) products, in FLOP/s.

    A product of two n x n matrices counts ``2 n^3`` FLOPs.
    """
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    compiled, compile_s = compile_jax(jnp.matmul, a, b)
    timing = time_calls(lambda: compiled(a, b), repeats=repeats, compile_s=compile_s)
    flops_per_s = 2 * size**3 / timing.best_s
    return {"size": size, "dtype": jnp.dtype(dtype).name, "best_s": timing.best_s, "flops_per_s": flops_per_s}


def rss_kib() -> dict[str, int]:
    """This process's resident set size now (``VmRSS``) and its peak (``VmHWM``), in KiB (Linux /proc).

    ``VmHWM`` belongs to the process's own memory map, unlike ``getrusage``'s ``ru_maxrss``, which
    Linux carries across ``exec`` from the parent: a child started by a process holding 5 GiB reports
    at least 5 GiB there, whatever it uses itself.
    """
    status = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
    return {"rss": int(fields["VmRSS"].split()[0]), "peak": int(fields["VmHWM"].split()[0])}


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux 4.0+ ``/proc/self/clear_refs``)."""
    Path("/proc/self/clear_refs").write_text("5")


def run_json_subprocess(argv: Sequence[str], *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python argv...`` in a fresh interpreter and parse the JSON object on its last stdout line."""
    result = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"subprocess {argv} failed with code {result.returncode}:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are written with 4 significant digits, None as a dash."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: str | Path, name: str, record: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``{name}.json`` (the full record) and ``{name}.md`` into ``out_dir``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path
