"""Where a run's files go: the one definition of an output directory's layout.

::

    DIR/
      results.zarr/             the store: an xarray Dataset in Zarr (format 2, consolidated metadata)
        .zmetadata              its consolidated metadata (attributes: config, hash, kind, environment)
        .done/{spec}-{chunk}    an empty marker per finished work chunk
      config.toml               the config's TOML source
      runs.jsonl                one line of timings per process run
      figures/                  PDF and PNG figures (and tables) drawn from the store alone
      .writers/                 one lease per live writing process (gradflow.sweep.lease); empty: removed
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

STORE_NAME = "results.zarr"
METADATA = ".zmetadata"
DONE_DIR = ".done"
CONFIG_FILE = "config.toml"
RUN_LOG = "runs.jsonl"
FIGURES_DIR = "figures"
WRITERS_DIR = ".writers"


@dataclasses.dataclass(frozen=True)
class OutputLayout:
    """The paths of the output directory ``root``.

    Example:
      >>> OutputLayout("runs/a").marker(0, 3).as_posix()
      'runs/a/results.zarr/.done/0-3'
    """

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def store(self) -> Path:
        return self.root / STORE_NAME

    @property
    def metadata(self) -> Path:
        return self.store / METADATA

    @property
    def done_dir(self) -> Path:
        return self.store / DONE_DIR

    def marker(self, spec: int, chunk: int) -> Path:
        """The done marker of work chunk ``chunk`` of shape combination ``spec``."""
        return self.done_dir / f"{spec}-{chunk}"

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def run_log(self) -> Path:
        return self.root / RUN_LOG

    @property
    def figures(self) -> Path:
        return self.root / FIGURES_DIR

    @property
    def writers(self) -> Path:
        return self.root / WRITERS_DIR


def parse_marker(name: str) -> tuple[int, int] | None:
    """``(spec, chunk)`` of a done marker's file name (see :meth:`OutputLayout.marker`); None for any other name."""
    match = re.fullmatch(r"(\d+)-(\d+)", name)
    return (int(match[1]), int(match[2])) if match else None
