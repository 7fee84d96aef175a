"""Commands as functions: run a sweep job into its store, then draw its figures.

The top of the layering (beside :mod:`gradflow.cli`): it joins the applications to :mod:`gradflow.plot`,
which no application imports. Plotting is imported where a figure is drawn, so ``import gradflow``
loads no plotting library.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from gradflow.collapse.job import collapse_job
from gradflow.collapse.table import collapse_table
from gradflow.config import Config, load_config, parse_config
from gradflow.profiles.job import profile_job
from gradflow.sweep.store import read_attributes
from gradflow.sweep.job import Job
from gradflow.sweep.layout import OutputLayout
from gradflow.sweep.results import Results
from gradflow.sweep.runner import run_job


def job_of_store(directory: str | Path) -> Job:
    """The job that wrote the store in ``directory``, rebuilt from the config source stored in it.

    Raises:
      ValueError: the store has no readable attributes, or its config no longer builds the same job (a
        data file it names moved or changed).
    """
    attrs = read_attributes(directory)
    if "config_source" not in attrs:
        raise ValueError(f"{str(OutputLayout(directory).store)!r} has no readable gradflow attributes; "
                         "only --overwrite can start it again")
    kind = attrs.get("kind", "collapse" if "collapse" in str(attrs.get("title", "")) else "profiles")
    builders = {"profiles": ("sweep", profile_job), "collapse": ("collapse", collapse_job)}
    if kind not in builders:
        raise ValueError(f"{str(OutputLayout(directory).store)!r} was written by a job of kind {kind!r}, which this "
                         f"gradflow does not know (it knows {sorted(builders)}); use the gradflow that wrote it")
    command, build = builders[kind]
    job = build(parse_config(attrs["config_source"], command=command, source_name=f"the config stored in {directory}",
                             base_dir=Path(directory)))
    if job.config_hash() != attrs.get("config_hash"):
        raise ValueError(f"the config stored in {str(directory)!r} no longer builds the job that wrote the store "
                         "(a data file it names moved or changed)")
    return job


@dataclasses.dataclass
class CollapseMap:
    """A finished collapse map: the stored results, the onset table and the files written."""

    results: Results
    table: dict
    directory: Path | None
    files: list[Path]


def collapse_map(
    config: Config | str | Path | None = None,
    out: str | Path | None = None,
    *,
    share: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    show_progress: bool = True,
) -> CollapseMap | None:
    """Train every variant of a collapse config and map where output collapse begins.

    Args:
      config: a collapse :class:`gradflow.config.Config`, a path to a TOML file, or None for the embedded example.
      out: directory of the resumable store and figures; None computes in memory (no files kept).
      share, overwrite, show_progress: as in :func:`gradflow.run_sweep`.

    Returns:
      The map, or None if this process's share is done but others' are not.

    Example (a small grid; see ``scripts/collapse_map.py`` for the full one)::

        import gradflow as gf
        cmap = gf.collapse_map("configs/collapse_recall.toml", "runs/collapse")
        cmap.table["onsets"]["forget_bias"]["onset"]        # where collapse begins, per sequence length
        cmap.results.data["collapsed"].mean()               # fraction of variants that collapsed
    """
    if not isinstance(config, Config):
        config = load_config(config, command="collapse")
    job = collapse_job(config)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="gradflow-collapse-") as tmp:
            run_job(job, tmp, show_progress=show_progress)
            results = Results.load(tmp)
        return CollapseMap(results, collapse_table(results), None, [])
    report = run_job(job, out, share=share, overwrite=overwrite, show_progress=show_progress)
    if not report.complete:
        return None
    results = Results.load(out)
    from gradflow.plot.collapse import plot_collapse_all

    files = plot_collapse_all(results, OutputLayout(out).figures)
    return CollapseMap(results, collapse_table(results), Path(out), files)
