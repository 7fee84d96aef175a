"""The ``gradflow`` command line: ``run`` a config, ``plot`` stored results.

Kept thin: it parses arguments, calls the library and reports where the files went.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_OUT = "gradflow-out"


def _enable_compilation_cache() -> None:
    """Persist compiled programs so a rerun of the same shapes does not compile again."""
    import jax

    cache = os.environ.get("GRADFLOW_CACHE_DIR", str(Path.home() / ".cache" / "gradflow" / "xla"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _summary(results) -> str:
    lines = []
    for name, array in results.data.items():
        if name.startswith("horizon_"):
            finite = array[np.isfinite(array)]
            never = int(np.isposinf(array).sum())
            bad = int(np.isnan(array).sum())
            median = f"{np.median(finite):.0f}" if finite.size else "-"
            lines.append(
                f"  {name}: median {median} steps over {finite.size} variants; "
                f"{never} never fall below 1e-{results.attrs['config']['analysis']['decades']:g} within T; {bad} non-finite"
            )
    return "\n".join(lines)


def cmd_run(args) -> int:
    from gradflow.config import load_config
    from gradflow.plot import plot_all
    from gradflow.sweep import run_sweep

    config = load_config(args.config)
    out = Path(args.out)
    _enable_compilation_cache()
    source = "the embedded default config" if args.config is None else args.config
    print(f"gradflow run: {config.grid.size * len(config.specs())} variants from {source} -> {out}", file=sys.stderr)
    start = time.perf_counter()
    results = run_sweep(config, show_progress=not args.quiet)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(config.source)
    results.save(out)
    figures = plot_all(results, out / "figures")
    print(_summary(results))
    print(f"wrote {out / 'results.npz'}, {out / 'results.json'}, {out / 'config.toml'} and {len(figures)} figure files "
          f"in {out / 'figures'} ({time.perf_counter() - start:.1f} s)")
    return 0


def cmd_plot(args) -> int:
    from gradflow.plot import plot_all
    from gradflow.results import Results

    results = Results.load(args.dir)
    figures = plot_all(results, Path(args.out) if args.out else Path(args.dir) / "figures")
    print("\n".join(str(p) for p in figures))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradflow",
        description="Measure exact gradient flow (lag profiles ||dh_T/dh_t||) in LSTMs over grids of model variants.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compute lag profiles for a config (the embedded default if none is given)")
    run.add_argument("config", nargs="?", default=None, help="TOML config file (default: the embedded default)")
    run.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(func=cmd_run)
    plot = sub.add_parser("plot", help="redraw every figure from stored results")
    plot.add_argument("dir", help="a directory written by 'gradflow run'")
    plot.add_argument("--out", default=None, help="figure directory (default: DIR/figures)")
    plot.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gradflow.config import ConfigError

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"gradflow {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
