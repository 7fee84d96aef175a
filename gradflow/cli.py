"""The ``gradflow`` command line: ``sweep`` a config (``run``: the default), ``plot`` and ``info`` a store.

Kept thin: it parses arguments, calls the library and reports where the files went.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from gradflow.sweep.layout import OutputLayout

DEFAULT_OUT = "gradflow-out"


def _enable_compilation_cache() -> None:
    """Persist compiled programs so a rerun of the same shapes does not compile again."""
    import jax

    cache = os.environ.get("GRADFLOW_CACHE_DIR", str(Path.home() / ".cache" / "gradflow" / "xla"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _full_float32_matmuls() -> None:
    """Full float32 matmuls unless the user chose a precision (``JAX_DEFAULT_MATMUL_PRECISION``): GPUs run float32
    matmuls as TF32 and TPUs as bf16 passes by default, which move lag profiles by more than rounding
    (``benchmarks/bench_precision.py``); on CPU the setting changes nothing. The store records the precision."""
    import jax

    if jax.config.jax_default_matmul_precision is None:
        jax.config.update("jax_default_matmul_precision", "highest")


def _use_file_backend() -> None:
    """Figures go to files: a non-interactive matplotlib backend, chosen here and never at import."""
    import matplotlib

    matplotlib.use("Agg")


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
    if "collapsed" in results.data:
        c = results.data["collapsed"]
        lines.append(f"  collapsed: {int(c.sum())} of {c.size} variants predict (nearly) the same value for every input; "
                     f"learned: {int(results.data['learned'].sum())}")
    analysis = results.attrs.get("config", {}).get("analysis", {})
    if analysis.get("method") == "probes":
        errors = np.concatenate([a.ravel() for n, a in results.data.items() if n.startswith("stderr_log10_norm_")])
        errors = errors[np.isfinite(errors)]
        typical = f"median standard error {np.median(errors):.3g} decades" if errors.size else "no finite errors"
        lines.append(f"  profiles estimated from {analysis.get('probes')} random probes per variant: {typical}")
    if "lyapunov" in results.data:
        lead, error = results.data["lyapunov"][..., 0], results.data["stderr_lyapunov"][..., 0]
        ok = np.isfinite(lead)
        lines.append(f"  lyapunov: leading exponent median {np.median(lead[ok]):.3g} nats per step (range "
                     f"[{lead[ok].min():.3g}, {lead[ok].max():.3g}], median standard error {np.median(error[ok]):.2g})"
                     if ok.any() else "  lyapunov: no finite leading exponent")
    if "nonfinite" in results.data:
        flagged = int(results.data["nonfinite"].sum())
        lines.append(f"  nonfinite: {flagged} variants with NaN or +inf lag profiles (stored as such, flagged)")
    return "\n".join(lines)


def _load_job(args):
    """The job of ``gradflow sweep/run`` (lag profiles) or ``gradflow collapse``, validated before any work."""
    from gradflow.config import load_config

    if args.command == "collapse":
        from gradflow.collapse.job import collapse_job

        return collapse_job(load_config(args.config, command="collapse"))  # sizes checked here, before any work
    from gradflow.profiles.job import profile_job

    return profile_job(load_config(args.config))


def _plot_store(results, directory: Path) -> list[Path]:
    """Every figure of a store, by the kind of job that wrote it (lag profiles or collapse map)."""
    _use_file_backend()
    from gradflow.plot.figures import plot_results

    return plot_results(results, directory)


def cmd_sweep(args) -> int:
    from gradflow.sweep.processes import initialize_distributed, process_share
    from gradflow.sweep.results import Results
    from gradflow.sweep.runner import run_job

    try:
        job = _load_job(args)
    except ValueError as err:  # bad data in an .npz named by a collapse config
        from gradflow.config import ConfigError

        raise ConfigError(str(err)) from None
    if args.distributed:
        initialize_distributed(args.coordinator, args.num_processes, args.process_id,
                               timeout=args.distributed_timeout, log=sys.stderr)
    share = process_share(args.shard)
    out = Path(args.out)
    _enable_compilation_cache()
    source = "the embedded default config" if args.config is None else args.config
    part = f" (share {share[0]}/{share[1]})" if share[1] > 1 else ""
    print(f"gradflow {args.command}: {job.n_variants * job.n_specs} variants from {source} -> "
          f"{out / 'results.zarr'}{part}", file=sys.stderr)
    start = time.perf_counter()
    report = run_job(job, out, share=share, overwrite=args.overwrite, show_progress=not args.quiet,
                     break_lease=args.break_lease)
    files = OutputLayout(out)
    if not files.config_file.exists() or args.overwrite:
        files.config_file.write_text(job.source)
    for action in report.repaired:
        print(f"gradflow {args.command}: the store needed repair: {action}", file=sys.stderr)
    resumed = f", {report.skipped} already done" if report.skipped else ""
    print(f"computed {report.computed} work chunks{resumed} in {report.seconds:.1f} s; "
          f"store {report.done}/{report.total} chunks done", file=sys.stderr)
    if not report.complete:
        print(f"wrote {report.path} (incomplete: other shards are still to run; "
              f"'gradflow plot {out}' once they are done)")
        return 0
    results = Results.load(out)
    figures = [] if args.no_plot else _plot_store(results, files.figures)
    print(_summary(results))
    print(f"wrote {report.path}, {files.config_file} and {len(figures)} files in {files.figures} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


def _store_kind(directory) -> str | None:
    """The ``kind`` a store records (None for a store without one, or without readable metadata)."""
    from gradflow.sweep.store import stored_attrs

    try:
        return stored_attrs(directory).get("kind")
    except FileNotFoundError:
        return None


def cmd_plot(args) -> int:
    from gradflow.sweep.results import Results
    from gradflow.sweep.store import progress_of

    if _store_kind(args.dir) == "monitor":  # profiles recorded during training: their own figures
        from gradflow.plot.monitor import plot_monitor

        _use_file_backend()
        figures = plot_monitor(args.dir, Path(args.out) if args.out else OutputLayout(args.dir).figures)
        print("\n".join(str(p) for p in figures))
        return 0
    results = Results.load(args.dir)
    done, total = progress_of(args.dir)
    if done < total:
        print(f"gradflow plot: warning: the store is incomplete ({done}/{total} chunks); missing values are blank",
              file=sys.stderr)
    health = _health(args.dir)
    if health is not None and not health.ok:
        print(f"gradflow plot: warning: the store is damaged; 'gradflow check {args.dir} --repair' then a rerun "
              f"repairs it\n{health.summary()}", file=sys.stderr)
    figures = _plot_store(results, Path(args.out) if args.out else OutputLayout(args.dir).figures)
    print("\n".join(str(p) for p in figures))
    return 0


def _describe_monitor(directory) -> str:
    """What a training monitor's store holds: its steps, layers and settings."""
    from gradflow.monitor.store import open_monitor

    ds = open_monitor(directory)
    steps = ds["step"].values
    layers = [f"{i} {d} {c.upper()} H={h}" for i, d, c, h in zip(*(ds[k].values for k in (
        "layer_index", "layer_direction", "layer_cell", "layer_hidden_size")))]
    span = f"{steps[0]}..{steps[-1]}" if len(steps) else "none yet"
    return "\n".join([f"{OutputLayout(directory).store}: a training monitor ({ds.attrs.get('framework')})",
                      f"  records       {len(steps)} at steps {span} (every {ds.attrs.get('every')} "
                      f"{ds.attrs.get('every_unit')}s)",
                      f"  layers        {'; '.join(layers)}",
                      f"  probe         (N, T, D) = {tuple(ds.attrs.get('probe_shape', ()))}, lags 1..{ds.sizes.get('lag')}, "
                      f"wrt {ds.attrs.get('wrt')}"])


def cmd_info(args) -> int:
    from gradflow.sweep.info import describe_store

    if _store_kind(args.dir) == "monitor":
        print(_describe_monitor(args.dir))
        return 0

    print(describe_store(args.dir))
    health = _health(args.dir)
    if health is not None:
        print("  health        " + health.summary().replace("\n", "\n                "))
    return 0


def _health(directory):
    """The cheap health check of a store (no decoding), or None if its job cannot be rebuilt (said on stderr)."""
    from gradflow.sweep.check import check_store
    from gradflow.workflows import job_of_store

    try:
        return check_store(directory, job_of_store(directory))
    except ValueError as err:
        print(f"gradflow: warning: cannot check the store: {err}", file=sys.stderr)
        return None


def cmd_check(args) -> int:
    """Check a store (decoding every marked chunk unless --quick); with --repair, fix what can be fixed and
    recompute exactly the damaged work items."""
    from gradflow.sweep.check import check_store, repair_store
    from gradflow.workflows import job_of_store

    if _store_kind(args.dir) == "monitor":
        raise ValueError(f"{args.dir} is a training monitor's store: it is checked whenever it is reopened (a record "
                         f"cut short is trimmed); 'gradflow check' verifies sweep and collapse stores")
    job = job_of_store(args.dir)
    health = check_store(args.dir, job, decode=not args.quick)
    print(f"{OutputLayout(args.dir).store}: {health.summary()}")
    if health.ok:
        return 0
    if not args.repair:
        print(f"run 'gradflow check {args.dir} --repair' to repair it and recompute exactly the damaged work items")
        return 1
    from gradflow.sweep.lease import WriterLease

    with WriterLease(args.dir, job.config_hash()):  # no writer of another config meanwhile
        actions = repair_store(args.dir, job, health)
    for action in actions:
        print(f"  repaired: {action}")
    from gradflow.sweep.runner import run_job

    _enable_compilation_cache()
    report = run_job(job, args.dir, show_progress=not args.quiet)  # only the unmarked (damaged) items
    print(f"  recomputed {report.computed} damaged work item(s); store {report.done}/{report.total} chunks done")
    return 0


def _threshold(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threshold must be NAME=NUMBER; got {text!r}") from None
    if not np.isfinite(number):
        raise argparse.ArgumentTypeError(f"--threshold {text}: the value must be a finite number; got {value.strip()!r}")
    return name.strip(), number


def cmd_diagnose(args) -> int:
    from gradflow.diagnose.checks import check_thresholds
    from gradflow.diagnose.report import summary, to_json, write_report

    thresholds = dict(args.threshold or [])
    check_thresholds(thresholds)  # before any training or file is written
    if args.config is not None:
        if args.weights or args.data:
            raise ValueError("--config describes a training setup; give it alone, or --weights with --data")
        from gradflow.diagnose.counterfactual import diagnose_setup

        _enable_compilation_cache()
        diagnosis = diagnose_setup(args.config, thresholds=thresholds, show_progress=not (args.quiet or args.json))
    else:
        if not (args.weights and args.data):
            raise ValueError("gradflow diagnose needs --weights MODEL (.npz, .pt/.pth, .keras) and --data DATA.npz (or "
                             "--config SETUP.toml)")
        from gradflow.data.tasks import HEAD_FOR_KIND, load_task
        from gradflow.diagnose.checks import diagnose_model

        model, task = _load_user_model(args), load_task(args.data)
        if args.head is not None and model.head is None:
            raise ValueError(f"--head {args.head} given but the weights have no head (head_kernel, head_bias): "
                             f"diagnose judges h_T itself; drop --head, or add the head to {args.weights}")
        says_output = Path(args.weights).suffix.lower() == ".keras"  # a Keras Dense names its activation
        if model.head is not None and (args.head or not says_output):  # else: --head, or the labels' kind
            model = model.replace(head=model.head.replace(output=args.head or HEAD_FOR_KIND[task.kind]))
        diagnosis = diagnose_model(model, task, thresholds=thresholds)
    from gradflow.plot.diagnosis import plot_diagnosis

    _use_file_backend()
    report = write_report(diagnosis, args.out, figures=plot_diagnosis(diagnosis, args.out))
    if args.json:
        print(to_json(diagnosis))
    else:
        print(summary(diagnosis))
        print(f"report: {report}")
    return 0


def _load_user_model(args, head_output: str | None = None):
    """The model named by ``--weights`` (any framework's file), read with the file options of the command."""
    from gradflow.data.loading import load_model

    return load_model(args.weights, rnn=args.rnn, head=args.head_layer, head_output=head_output,
                      activation=args.activation)


def cmd_profile(args) -> int:
    """Lag profiles of every layer of a user's model and its input sensitivity: a table, or strict JSON."""
    import json

    import jax

    from gradflow.data.tasks import load_inputs
    from gradflow.profiles.report import profile_inputs, profile_json, profile_model, profile_table

    if args.data is not None and args.seq_len is not None:
        raise ValueError("give --data DATA.npz or --seq-len T (with --input-seed), not both")
    if args.data is None and args.seq_len is None:
        raise ValueError("gradflow profile needs --data DATA.npz (X of shape (N, T, D)) or --seq-len T")
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    model = _load_user_model(args)
    data = load_inputs(args.data) if args.data is not None else None
    xs = profile_inputs(model, data=data, seq_len=args.seq_len, input_seed=args.input_seed)
    _enable_compilation_cache()
    profile = profile_model(model, xs, dtype=args.dtype, wrt=args.wrt)
    document = json.dumps(profile_json(profile), allow_nan=False)
    if args.out is not None:
        from gradflow.plot.model import write_model_profile_figures

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "profile.json").write_text(document + "\n")
        _use_file_backend()
        figures = write_model_profile_figures(profile, out)
    if args.json:
        print(document)
        return 0
    source = f"{args.data} ({len(xs)} sequences, mean of log10 norms)" if data is not None else \
        f"standard normal inputs, T = {args.seq_len}, seed {args.input_seed}"
    print(f"{args.weights}: {len(model.layers)} level(s), {args.dtype}, on {source}")
    print(profile_table(profile))
    if args.out is not None:
        print(f"wrote {out / 'profile.json'} and {len(figures)} figure files in {out}")
    return 0


def _add_model_file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rnn", default=None, metavar="PREFIX",
                        help="PyTorch: the key prefix of the recurrent module to read when the file holds several")
    parser.add_argument("--head-layer", default=None, metavar="PREFIX",
                        help="PyTorch: the prefix of the Linear head when several fit the top layer")
    parser.add_argument("--activation", default=None,
                        help="cell activation of .npz weights, which do not say it (default tanh)")


def _shard(text: str) -> tuple[int, int]:
    from gradflow.sweep.processes import parse_shard

    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--overwrite", action="store_true", help="replace results of a different config in --out")
    parser.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                        help="take share I of N independent processes (default: SLURM_ARRAY_TASK_ID/COUNT if set)")
    parser.add_argument("--distributed", action="store_true",
                        help="join a jax.distributed job (arguments from the cluster unless given below)")
    parser.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="jax.distributed coordinator")
    parser.add_argument("--num-processes", type=int, default=None, help="jax.distributed process count")
    parser.add_argument("--process-id", type=int, default=None, help="jax.distributed process id")
    parser.add_argument("--distributed-timeout", type=int, default=300, metavar="SECONDS",
                        help="how long to wait for every jax.distributed process to arrive (default 300)")
    parser.add_argument("--break-lease", action="store_true",
                        help="remove the leases of writers of another config that are gone for good (a crashed host)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw figures when the store is complete")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=cmd_sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradflow",
        description="Measure exact gradient flow (lag profiles ||dh_T/dh_t||) in LSTMs over grids of model variants.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="compute a config's sweep into DIR/results.zarr (resumes; shards over processes)")
    sweep.add_argument("config", help="TOML config file")
    _add_sweep_arguments(sweep)
    run = sub.add_parser("run", help="'sweep' of a config, the embedded default if none is given")
    run.add_argument("config", nargs="?", default=None, help="TOML config file (default: the embedded default)")
    _add_sweep_arguments(run)
    collapse = sub.add_parser("collapse", help="train every variant of a collapse config and map where output collapse "
                              "begins (DIR/results.zarr; resumes; shards over processes)")
    collapse.add_argument("config", nargs="?", default=None,
                          help="TOML collapse config (default: the embedded example, recall task)")
    _add_sweep_arguments(collapse)
    plot = sub.add_parser("plot", help="redraw every figure from stored results")
    plot.add_argument("dir", help="a directory written by 'gradflow sweep', 'run' or 'collapse', or by a training "
                      "monitor (the profile's evolution over training)")
    plot.add_argument("--out", default=None, help="figure directory (default: DIR/figures)")
    plot.set_defaults(func=cmd_plot)
    diagnose = sub.add_parser("diagnose", help="why does my LSTM output the same value? checks with evidence, "
                              "from trained weights and data, or by training a setup against its remedies")
    diagnose.add_argument("--weights", metavar="MODEL", help="the trained model: a PyTorch state dict (.pt, .pth), a "
                          "Keras file (.keras) or an .npz of weights (Keras or PyTorch names, optional head_kernel, "
                          "head_bias)")
    diagnose.add_argument("--data", help="DATA.npz with X (N, T, D) and y (N,) or (N, k)")
    diagnose.add_argument("--config", help="SETUP.toml: a training setup to diagnose by training it beside its remedies")
    _add_model_file_arguments(diagnose)
    diagnose.add_argument("--head", choices=("sigmoid", "softmax", "linear"), default=None,
                          help="how the head is applied (default: from the labels)")
    diagnose.add_argument("--threshold", action="append", type=_threshold, metavar="NAME=VALUE",
                          help="override a documented threshold (repeatable)")
    diagnose.add_argument("--out", default="gradflow-diagnosis", help="report directory (default gradflow-diagnosis)")
    diagnose.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the summary")
    diagnose.add_argument("--quiet", action="store_true", help="no progress output")
    diagnose.set_defaults(func=cmd_diagnose)
    profile = sub.add_parser("profile", help="lag profiles of every layer of your model (PyTorch, Keras or .npz "
                             "file) and its input sensitivity: a table, or strict JSON with --json")
    profile.add_argument("--weights", required=True, metavar="MODEL", help="a PyTorch state dict (.pt, .pth), a Keras "
                         "file (.keras) or an .npz of weights")
    profile.add_argument("--data", default=None, metavar="DATA.npz",
                         help="X (N, T, D): profiles are the mean over the N sequences of the log10 norms")
    profile.add_argument("--seq-len", type=int, default=None, metavar="T",
                         help="without --data: one standard normal input sequence of T steps")
    profile.add_argument("--input-seed", type=int, default=0, metavar="S", help="seed of that sequence (default 0)")
    profile.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                         help="computation dtype (default float32)")
    profile.add_argument("--wrt", choices=("h", "state"), default="h",
                         help="h: perturb h with an LSTM's c held fixed (default); state: the full state (h, c)")
    profile.add_argument("--json", action="store_true", help="print exactly one strict JSON object on stdout")
    profile.add_argument("--out", default=None, metavar="DIR", help="also write DIR/profile.json and figures")
    _add_model_file_arguments(profile)
    profile.set_defaults(func=cmd_profile)
    check = sub.add_parser("check", help="verify a store: metadata, coordinates, markers, every chunk marked done "
                           "present and decoding; --repair fixes it and recomputes exactly the damaged work items")
    check.add_argument("dir", help="a directory written by 'gradflow sweep', 'run' or 'collapse'")
    check.add_argument("--repair", action="store_true",
                       help="fix metadata and coordinates, then recompute exactly the damaged work items")
    check.add_argument("--quick", action="store_true", help="only look for files; do not decode the chunks")
    check.add_argument("--quiet", action="store_true", help="no progress output while recomputing")
    check.set_defaults(func=cmd_check)
    info = sub.add_parser("info", help="summarise a results store: config, progress, environment, variables")
    info.add_argument("dir", help="a directory written by 'gradflow sweep' or 'gradflow run'")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _full_float32_matmuls()
    from gradflow.config import ConfigError
    from gradflow.sweep.lease import StoreBusyError
    from gradflow.sweep.processes import ShareError
    from gradflow.sweep.store import StoreMismatchError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"gradflow {args.command}: interrupted; finished work is kept (only chunks in flight are lost): run the "
              "same command again to resume", file=sys.stderr)
        return 130
    except (ConfigError, StoreMismatchError, StoreBusyError, ShareError, OSError) as err:
        print(f"gradflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        if args.command in ("diagnose", "profile", "check", "plot", "info"):  # input files: their errors name what is wrong
            print(f"gradflow {args.command}: error: {err}", file=sys.stderr)
            return 2
        return _unexpected(args, err)
    except Exception as err:  # noqa: BLE001  (a bug: one line for the user, the traceback on request)
        return _unexpected(args, err)


def _unexpected(args, err: Exception) -> int:
    """An error gradflow did not expect: one line (exit 1); ``GRADFLOW_DEBUG=1`` shows the traceback."""
    if os.environ.get("GRADFLOW_DEBUG"):
        raise err
    print(f"gradflow {args.command}: unexpected error (likely a bug in gradflow; please report it with the command): "
          f"{type(err).__name__}: {err}; GRADFLOW_DEBUG=1 shows the traceback", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
