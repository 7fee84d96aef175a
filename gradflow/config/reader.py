"""The one reader: TOML text (or a file, or the embedded default) to a validated :class:`Config`.

Each key goes through its table's rule once; then the rules between keys: a task's input size and
data file, ``steps`` or ``epochs``, the collapse map's axes, a diagnose setup's single model, the
number of variants and the store's size, a sweep's memory budget. Every error names the table and the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import tomllib

from gradflow.config.defaults import EMBEDDED
from gradflow.config.fields import ConfigError
from gradflow.config.tables import COMMANDS, TABLES, TASKS, Config, Derived, Required, keys, users
from gradflow.flow.methods import LYAPUNOV_WINDOWS

_EMBEDDED_NAMES = {"sweep": "the embedded default config", "collapse": "the embedded collapse config",
                   "diagnose": "the embedded diagnose example"}


def parse_config(text: str, *, command: str = "sweep", source_name: str = "config",
                 base_dir: str | Path | None = None) -> Config:
    """Parse and validate TOML text for ``command``; :class:`ConfigError` names the bad table and key.

    Args:
      text: the TOML.
      command: ``"sweep"`` (``gradflow sweep`` and ``run``), ``"collapse"`` or ``"diagnose"``.
      source_name: what to call the text in messages (a file name).
      base_dir: the directory a relative ``[data].path`` is relative to (None: the working directory).

    Example:
      >>> cfg = parse_config("[model]\\ninput_size = 2\\nhidden_size = [8, 16]\\n[data]\\nseq_len = 50\\n")
      >>> cfg.model.hidden_size, cfg.data.seq_len, cfg.grid.axes
      ((8, 16), (50,), {})
      >>> parse_config('[data]\\ntask = "recall"\\n[train]\\nsteps = 10\\nepochs = 2\\n', command="collapse")
      Traceback (most recent call last):
      ...
      gradflow.config.fields.ConfigError: [train].steps and [train].epochs exclude each other; give one
    """
    if command not in COMMANDS:
        raise ValueError(f"command must be one of {list(COMMANDS)}; got {command!r}")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source_name} is not valid TOML: {err}") from None
    allowed = [name for name, table in TABLES.items() if any(command in users(f) for f in keys(table))]
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:
        raise ConfigError(f"{source_name}: unknown table(s) {unknown}; allowed tables are {allowed}")
    for name in raw:
        if name not in allowed:
            commands = sorted({c for f in keys(TABLES[name]) for c in users(f)}, key=COMMANDS.index)
            raise ConfigError(f"{source_name}: [{name}] is not used by 'gradflow {command}' "
                              f"(it is for {', '.join(commands)})")
    values: dict[str, dict[str, Any]] = {}
    for name, table in TABLES.items():
        given = raw.get(name, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{source_name}: [{name}] must be a table")
        values[name] = _read_table(name, table, given, command)
    given = {name: set(raw.get(name, {})) for name in TABLES}
    if command != "sweep":
        _task_keys(values, given, base_dir)
        _steps_or_epochs(values["train"], given["train"])
    grid_axes = given["grid"] | ({"seed"} if command == "diagnose" else set())
    config = Config(command, source=text, grid=TABLES["grid"](**values["grid"], given=frozenset(grid_axes)),
                    **{name: TABLES[name](**values[name]) for name in ("model", "data", "train", "analysis")})
    if command == "collapse":
        config = _map_axes(config)
    elif command == "diagnose":
        _one_model(config)
    config.check_sizes()  # too many variants, too large a store or data: an error now, before any work and any file
    if command == "sweep":
        _analysis_fits(config, given["analysis"])
        config.work_chunk_size()  # a chunk that does not fit the memory budget likewise
    return config


def load_config(path: str | Path | None = None, *, command: str = "sweep") -> Config:
    """Read and validate a config file for ``command``; None: that command's embedded config.

    A relative ``[data].path`` is relative to the file.
    """
    if path is None:
        return parse_config(EMBEDDED[command], command=command, source_name=_EMBEDDED_NAMES[command])
    text, path = read_config_file(path)
    return parse_config(text, command=command, source_name=str(path), base_dir=path.parent)


def read_config_file(path: str | Path) -> tuple[str, Path]:
    """The text of a config file and its path; :class:`ConfigError` if there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        return path.read_text(encoding="utf-8"), path
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason}); "
                          "TOML files are UTF-8") from None


def _read_table(name: str, table: type, given: dict[str, Any], command: str) -> dict[str, Any]:
    """Each key of ``table``: its rule applied to the given value or to this command's default."""
    fields = {f.name: f for f in keys(table)}
    used = sorted(k for k, f in fields.items() if command in users(f))
    extra = sorted(set(given) - set(fields))
    if extra:
        raise ConfigError(f"[{name}]: unknown key(s) {extra}; allowed keys are {used}")
    for k in given:
        if k not in used:
            raise ConfigError(f"[{name}].{k} is not used by 'gradflow {command}' (it is for "
                              f"{', '.join(users(fields[k]))})")
    out = {}
    for k, f in fields.items():
        where, default = f"[{name}].{k}", f.metadata["defaults"].get(command)
        if k in given:
            out[k] = f.metadata["rule"](where, given[k])
        elif isinstance(default, Required):
            raise ConfigError(f"{where} is required ({f.metadata['rule'].type})")
        elif k in used and not isinstance(default, Derived):
            out[k] = f.metadata["rule"](where, default)
        else:
            out[k] = None
    return out


def _task_keys(values: dict[str, dict[str, Any]], given: dict[str, set], base_dir: str | Path | None) -> None:
    """The data file of ``task = "npz"`` (its sizes are the file's), or a task's input size."""
    data, model = values["data"], values["model"]
    task = data["task"]
    if task == "npz":
        if data["path"] is None:
            raise ConfigError('[data].path must name the .npz file (X (N, T, D), y (N,) or (N, k)) for task = "npz"')
        path = Path(data["path"])
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        if not path.is_file():
            raise ConfigError(f"[data].path: data file {str(path)!r} does not exist")
        for table, k in (("data", "n"), ("data", "seq_len"), ("model", "input_size")):
            if k in given[table]:
                raise ConfigError(f'[{table}].{k} is set by the data file for task = "npz"; remove it')
            values[table][k] = None
        data["path"] = str(path)
        return
    if data["path"] is not None:
        raise ConfigError(f'[data].path is only for task = "npz"; got task = {task!r}')
    if model["input_size"] is None:
        model["input_size"] = TASKS[task]
    elif task == "adding" and model["input_size"] != 2:
        raise ConfigError(f"[model].input_size is 2 for the adding problem (values and markers); got {model['input_size']}")
    if task == "adding" and min(data["seq_len"]) < 2:
        raise ConfigError(f"[data].seq_len must hold integers >= 2 for the adding problem; got {min(data['seq_len'])}")


def _steps_or_epochs(train: dict[str, Any], given: set) -> None:
    """One of ``steps`` and ``epochs``; steps a multiple of ``checkpoints`` where both are known."""
    if {"steps", "epochs"} <= given:
        raise ConfigError("[train].steps and [train].epochs exclude each other; give one")
    if "epochs" in given:
        train["steps"] = None
    elif "steps" in given:
        train["epochs"] = None
    steps, checkpoints = train["steps"], train["checkpoints"]
    if steps is not None and checkpoints is not None and steps % checkpoints:
        raise ConfigError(f"[train].steps ({steps}) must be a multiple of [train].checkpoints ({checkpoints})")


def _map_axes(config: Config) -> Config:
    """The collapse map's axes: as given (each a swept setting), else the first two swept ones but the seed."""
    dims = list(config.dims)
    if config.analysis.map is None:
        return dataclasses.replace(config, analysis=dataclasses.replace(
            config.analysis, map=tuple(k for k in dims if k != "seed")[:2]))
    for name in config.analysis.map:
        if name not in dims:
            raise ConfigError(f"[analysis].map: {name!r} is not a swept setting; swept: {dims}")
    return config


def _analysis_fits(config: Config, given: set) -> None:
    """A sweep's ``lyapunov`` (k <= 2H, the state's size; T long enough for its windows) and ``probes`` (only
    with ``method = "probes"``) where they apply."""
    a = config.analysis
    if a.lyapunov:
        smallest = min(config.model.hidden_size)
        if a.lyapunov > 2 * smallest:
            raise ConfigError(f"[analysis].lyapunov = {a.lyapunov}: at most 2 x hidden_size = {2 * smallest} exponents "
                              f"(the state (h, c) has {2 * smallest} dimensions at hidden_size = {smallest})")
        shortest = min(config.data.seq_len)
        if shortest < 2 * (LYAPUNOV_WINDOWS + 1):
            raise ConfigError(f"[analysis].lyapunov needs [data].seq_len >= {2 * (LYAPUNOV_WINDOWS + 1)} (a transient "
                              f"and {LYAPUNOV_WINDOWS} windows of at least 2 steps for the standard error); got {shortest}")
    if "probes" in given and a.method != "probes":
        raise ConfigError(f'[analysis].probes = {a.probes} applies to method = "probes" only; method is {a.method!r}')


def _one_model(config: Config) -> None:
    """A diagnose setup is one model: every setting one value, except the seeds it is trained over."""
    for name, table in TABLES.items():
        for f in keys(table):
            value = getattr(getattr(config, name), f.name)
            if f.metadata["rule"].is_axis and value is not None and len(value) > 1 and (name, f.name) != ("grid", "seed"):
                raise ConfigError(f"[{name}].{f.name} takes one value in a diagnose setup (one model, trained "
                                  f"over the seeds of [grid].seed); got {list(value)}")
