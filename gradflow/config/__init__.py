"""Configuration: one TOML vocabulary, one reader, typed and validated tables for every command.

``[model] [grid] [data] [train] [analysis]`` mean the same in a sweep config, a collapse config and a
diagnose setup; :func:`parse_config` / :func:`load_config` read any of them for a ``command`` into a
:class:`Config` of frozen tables. :func:`reference_markdown` lists every key.

Modules: ``fields`` (the shared rules), ``tables`` (the vocabulary), ``reader``, ``defaults`` (the
embedded configs), ``reference``. May import :mod:`gradflow.lstm`, :mod:`gradflow.flow`,
:mod:`gradflow.data` and :mod:`gradflow.training` (names of activations, schemes, optimisers, tasks;
the memory estimate that sizes a sweep's chunks); nothing of the applications.
"""

from gradflow.config.defaults import DEFAULT_COLLAPSE_CONFIG, DEFAULT_CONFIG, DIAGNOSE_EXAMPLE
from gradflow.config.fields import MAX_SEED, ConfigError
from gradflow.config.reader import load_config, parse_config, read_config_file
from gradflow.config.reference import reference_markdown
from gradflow.config.tables import (
    COMMANDS,
    SHAPE_AXES,
    TASKS,
    AnalysisTable,
    Config,
    DataTable,
    GridTable,
    ModelTable,
    TrainTable,
)

__all__ = [
    "COMMANDS",
    "DEFAULT_COLLAPSE_CONFIG",
    "DEFAULT_CONFIG",
    "DIAGNOSE_EXAMPLE",
    "MAX_SEED",
    "SHAPE_AXES",
    "TASKS",
    "AnalysisTable",
    "Config",
    "ConfigError",
    "DataTable",
    "GridTable",
    "ModelTable",
    "TrainTable",
    "load_config",
    "parse_config",
    "read_config_file",
    "reference_markdown",
]
