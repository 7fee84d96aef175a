"""The vocabulary: five typed tables, each key with its rule, meaning and default for every command that uses it.

Every command reads the same tables (``[model]``, ``[grid]``, ``[data]``, ``[train]``, ``[analysis]``);
a key has one name and one table everywhere. Each key is a dataclass field whose metadata holds its
:class:`gradflow.config.fields.Rule`, its meaning, and its default per command (:data:`REQUIRED`, a
:class:`Derived` default that the reader works out from other keys, or a value). A key a command does
not use is None in that command's tables. :func:`gradflow.config.reader.parse_config` fills them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np

from gradflow.config.fields import (
    CHUNK_SIZE,
    POSITIVE_INTEGER,
    SEED,
    TEXT,
    ConfigError,
    Rule,
    axis,
    choice,
    integers,
    numbers,
)
from gradflow.data.tasks import Task, adding_task, load_task, recall_task, seed_task
from gradflow.flow.engine import WRT
from gradflow.flow.methods import METHODS
from gradflow.flow.memory import auto_chunk_size, check_chunk_size, format_bytes
from gradflow.flow.variants import GRID_DEFAULTS, Grid, ModelSpec
from gradflow.lstm.cell import ACTIVATIONS, GATE_NAMES, RECURRENT_ACTIVATIONS
from gradflow.lstm.init import SCHEMES
from gradflow.training.train import OPTIMIZERS, TRAIN_DEFAULTS, TrainGrid

#: The commands that read configs: ``gradflow sweep`` (and ``run``), ``gradflow collapse``, ``gradflow diagnose``.
COMMANDS: tuple[str, ...] = ("sweep", "collapse", "diagnose")
TRAINING = ("collapse", "diagnose")

#: Most variants (grid points x shape combinations) one config may hold: the grid's values are held in
#: memory, and every variant is a row of every stored variable. Split a larger sweep over several configs.
MAX_VARIANTS = 10**7

#: Most bytes a sweep's or collapse map's store may hold (the estimate of :meth:`Config.store_bytes`).
MAX_STORE_BYTES = 2**40

#: The data a collapse or diagnose config trains on, and the input size each gives (npz: the file's).
TASKS: dict[str, int | None] = {"seed": 10, "recall": 1, "adding": 2, "npz": None}


class Required:
    """The default of a key the config must give."""

    def __repr__(self) -> str:
        return "required"


REQUIRED = Required()


@dataclasses.dataclass(frozen=True)
class Derived:
    """The default of a key the reader works out from other keys (None until it does); ``how`` says how."""

    how: str


def key(rule: Rule, meaning: str, default: Any = REQUIRED, *, used_by: tuple[str, ...] = COMMANDS,
        resolved: bool = True, unless: Any = None, **per_command: Any) -> Any:
    """A config key: a dataclass field holding its rule, meaning and default for each command in ``used_by``.

    ``per_command`` overrides ``default`` for some commands; ``resolved=False`` leaves the key out of
    :meth:`Config.resolved` (it changes how, not what, is computed); ``unless`` leaves it out when it holds
    that value (a key added later: configs that do not use it keep the hash, and the store, they had).
    """
    defaults = {command: per_command.get(command, default) for command in used_by}
    return dataclasses.field(metadata={"rule": rule, "meaning": meaning, "defaults": defaults, "resolved": resolved,
                                       "unless": unless})


def keys(table: type) -> tuple[dataclasses.Field, ...]:
    """The key fields of a table class, in order."""
    return tuple(f for f in dataclasses.fields(table) if "rule" in f.metadata)


def users(field: dataclasses.Field) -> tuple[str, ...]:
    """The commands that use a key."""
    return tuple(field.metadata["defaults"])


@dataclasses.dataclass(frozen=True)
class ModelTable:
    """``[model]``: the network. Shape settings: a list sweeps them, one compile per value."""

    input_size: int | None = key(
        POSITIVE_INTEGER, "D: features per step", Derived("from the task: seed 10, recall 1, adding 2, npz the file's"),
        sweep=REQUIRED)
    hidden_size: tuple[int, ...] = key(axis(integers()), "H: units of the LSTM", 32, sweep=REQUIRED, diagnose=50)
    activation: tuple[str, ...] = key(axis(choice(ACTIVATIONS)), "cell activation (candidate and output)", "tanh")
    recurrent_activation: tuple[str, ...] = key(axis(choice(RECURRENT_ACTIVATIONS)), "gate activation", "sigmoid")


@dataclasses.dataclass(frozen=True)
class GridTable:
    """``[grid]``: per-variant numbers, vmapped (never recompiled). Every key given is an axis of the results.

    Attributes:
      given: the keys that are axes of the grid: those the config gives (and, in a diagnose setup, ``seed``).
    """

    forget_bias: tuple[float, ...] = key(axis(numbers("finite")), "initial forget-gate bias",
                                         GRID_DEFAULTS["forget_bias"])
    weight_scale: tuple[float, ...] = key(axis(numbers("positive")), "scale of the initial weights",
                                          GRID_DEFAULTS["weight_scale"])
    scheme: tuple[str, ...] = key(axis(choice(SCHEMES)), "initialisation of the weights", GRID_DEFAULTS["scheme"],
                                  collapse=TRAIN_DEFAULTS["scheme"], diagnose=TRAIN_DEFAULTS["scheme"])
    seed: tuple[int, ...] = key(axis(SEED), "seed of the initial weights (and of the minibatch order)",
                                GRID_DEFAULTS["seed"], diagnose=[0, 1, 2])
    learning_rate: tuple[float, ...] | None = key(axis(numbers("positive")), "learning rate",
                                                  TRAIN_DEFAULTS["learning_rate"], used_by=TRAINING)
    weight_decay: tuple[float, ...] | None = key(
        axis(numbers("nonnegative")), "decoupled weight decay: each step adds - learning_rate * weight_decay * w",
        TRAIN_DEFAULTS["weight_decay"], used_by=TRAINING)
    l2: tuple[float, ...] | None = key(axis(numbers("nonnegative")),
                                       "L2 penalty on kernel and recurrent kernel (as Keras' regularisers)",
                                       TRAIN_DEFAULTS["l2"], used_by=TRAINING)
    clip_norm: tuple[float, ...] | None = key(axis(numbers("nonnegative")),
                                              "gradient clipping by global norm; 0: no clipping",
                                              TRAIN_DEFAULTS["clip_norm"], used_by=TRAINING)
    given: frozenset[str] = frozenset()

    @property
    def axes(self) -> dict[str, tuple]:
        """The grid's axes (the :attr:`given` keys) and their values, in the table's order."""
        return {f.name: getattr(self, f.name) for f in keys(GridTable) if f.name in self.given}


@dataclasses.dataclass(frozen=True)
class DataTable:
    """``[data]``: the inputs: probe inputs for a sweep, a task to train on for collapse and diagnose."""

    seq_len: tuple[int, ...] | None = key(axis(integers()), "T: steps per sequence (adding: at least 2)", 20,
                                          sweep=REQUIRED)
    input_seed: int | None = key(SEED, "seed of the standard-normal probe inputs (T, D)", 0, used_by=("sweep",))
    task: str | None = key(choice(TASKS), "seed: random features and labels; recall: the sign of the first "
                           "input; adding: the adding problem; npz: a data file", used_by=TRAINING)
    n: tuple[int, ...] | None = key(axis(integers(2)), "sequences, training and validation together", 512,
                                    used_by=TRAINING, diagnose=100)
    noise: float | None = key(numbers("positive"), "recall: standard deviation of the noise after the first step",
                              1.0, used_by=TRAINING)
    path: str | None = key(TEXT, "npz: the file (X (N, T, D), y (N,) or (N, k)), relative to the config file",
                           Derived('none; required for task = "npz"'), used_by=TRAINING)
    validation: float | None = key(numbers("fraction"), "fraction of the sequences held out", 0.2, used_by=TRAINING)
    data_seed: int | None = key(SEED, "seed of the generated data and of the split", 0, used_by=TRAINING)


@dataclasses.dataclass(frozen=True)
class TrainTable:
    """``[train]``: how each variant is trained (collapse, diagnose). ``steps`` and ``epochs`` exclude each other."""

    optimizer: tuple[str, ...] | None = key(axis(choice(OPTIMIZERS)), "optimiser", "adam", used_by=TRAINING)
    steps: int | None = key(integers(), "training steps (minibatches)", 400, used_by=TRAINING,
                            diagnose=Derived("epochs x ceil(n_train / batch_size)"))
    epochs: int | None = key(integers(), "passes over the training sequences: steps = epochs x ceil(n_train / "
                             "batch_size)", Derived("none: steps is used"), used_by=TRAINING, diagnose=100)
    batch_size: int | None = key(integers(), "sequences per minibatch", 32, used_by=TRAINING)
    checkpoints: int | None = key(integers(), "evaluations during training, evenly spaced; must divide steps", 4,
                                  used_by=TRAINING, diagnose=Derived("the largest c <= 10 dividing steps"))
    grad_probe: int | None = key(integers(), "training sequences whose ||dL/dh_t|| is recorded at each checkpoint", 4,
                                 used_by=TRAINING)

    def schedule(self, n_train: int) -> tuple[int, int]:
        """``(steps, checkpoints)`` for ``n_train`` training sequences.

        ``steps`` as given, or ``epochs * ceil(n_train / min(batch_size, n_train))``; ``checkpoints``
        as given, or the largest ``c <= 10`` that divides ``steps``.

        Raises:
          ConfigError: if ``checkpoints`` does not divide the steps ``epochs`` gives.
        """
        steps = self.steps or self.epochs * math.ceil(n_train / min(self.batch_size, n_train))
        checkpoints = self.checkpoints or max(c for c in range(1, 11) if steps % c == 0)
        if steps % checkpoints:
            raise ConfigError(f"[train].epochs = {self.epochs} gives {steps} steps for {n_train} training sequences, "
                              f"not a multiple of [train].checkpoints ({checkpoints})")
        return steps, checkpoints


@dataclasses.dataclass(frozen=True)
class AnalysisTable:
    """``[analysis]``: what is computed from each variant, and how the work is cut."""

    wrt: tuple[str, ...] | None = key(axis(choice(WRT)),
                                      "lag profiles: h (hidden state) and/or state ((h, c) together)", ["h", "state"],
                                      used_by=("sweep",))
    decades: float | None = key(numbers("positive"), "horizon: the first lag whose norm is below 10^-decades", 10.0,
                                used_by=("sweep",))
    dtype: str | None = key(choice(("float32", "float64")), "precision of the profiles", "float32", used_by=("sweep",))
    method: str | None = key(choice(METHODS), 'lag profiles: "exact" (Frobenius norm), "spectral" (largest singular '
                             'value, exact) or "probes" (Frobenius norm estimated from random probes, with a '
                             "standard error per lag)", "exact", used_by=("sweep",), unless="exact")
    probes: int | None = key(integers(2), 'probe vectors per profile (method = "probes"): cost and error '
                             "bars scale as probes and 1/sqrt(probes)", 16, used_by=("sweep",))
    lyapunov: int | None = key(integers(0), "k leading Lyapunov exponents of the state (h, c) on the probe "
                               "inputs, with standard errors; 0: none", 0, used_by=("sweep",), unless=0)
    map: tuple[str, ...] | None = key(axis(TEXT), "the collapse map's two axes (swept settings)",
                                      Derived("the first two swept settings other than seed"), used_by=("collapse",))
    spread_threshold: float | None = key(numbers("positive"), "collapsed: prediction spread below this fraction "
                                         "of the label spread", 0.1, used_by=TRAINING)
    loss_threshold: float | None = key(numbers("positive"), "learned: validation loss below this fraction of the "
                                       "best constant predictor's", 0.9, used_by=TRAINING)
    chunk_size: int | str | None = key(CHUNK_SIZE, 'most variants per work chunk; "auto": as many as fit '
                                       "memory_budget_mb", "auto", used_by=("sweep", "collapse"))
    memory_budget_mb: float | None = key(numbers("positive", unit="MiB"), "device memory one work chunk may use",
                                         1024.0, used_by=("sweep", "collapse"), resolved=False, collapse=2048.0)


#: Each table's name and class, in the order configs list them.
TABLES: dict[str, type] = {"model": ModelTable, "grid": GridTable, "data": DataTable, "train": TrainTable,
                           "analysis": AnalysisTable}

#: Settings that fix shapes or control flow, per command: each combination is one compile, and the
#: swept ones (more than one value) lead the results' dimensions in this order.
SHAPE_AXES: dict[str, tuple[str, ...]] = {
    "sweep": ("hidden_size", "activation", "recurrent_activation", "seq_len"),
    "collapse": ("n", "seq_len", "hidden_size", "activation", "recurrent_activation", "optimizer"),
    "diagnose": ("n", "seq_len", "hidden_size", "activation", "recurrent_activation", "optimizer"),
}

#: key name -> its table's name (every key has one table).
TABLE_OF: dict[str, str] = {f.name: name for name, table in TABLES.items() for f in keys(table)}


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated configuration: the five tables of one command, and the TOML text they came from.

    Attributes:
      command: ``"sweep"`` (also ``gradflow run``), ``"collapse"`` or ``"diagnose"``.
      model, grid, data, train, analysis: the tables; keys this command does not use are None.
      source: the TOML text.
    """

    command: str
    model: ModelTable
    grid: GridTable
    data: DataTable
    train: TrainTable
    analysis: AnalysisTable
    source: str = dataclasses.field(repr=False, default="")

    @property
    def shape_axes(self) -> dict[str, tuple | None]:
        """Each shape setting of this command -> its values (None: an npz file's, known once it is read)."""
        return {name: getattr(getattr(self, TABLE_OF[name]), name) for name in SHAPE_AXES[self.command]}

    @property
    def dims(self) -> dict[str, tuple]:
        """Named dimensions of the results (swept shape settings, then the grid's axes) and their values."""
        swept = {k: v for k, v in self.shape_axes.items() if v is not None and len(v) > 1}
        return {**swept, **self.grid.axes}

    def variants(self) -> Grid:
        """The grid's axes as a :class:`Grid` (sweep) or :class:`TrainGrid`; other settings at their defaults."""
        return (Grid if self.command == "sweep" else TrainGrid)(**self.grid.axes)

    def specs(self) -> list[tuple[dict[str, Any], ModelSpec]]:
        """A sweep's combinations of shape settings (C order), each with its :class:`ModelSpec`."""
        self._only("sweep", "specs()")
        out = []
        for combo in itertools.product(*self.shape_axes.values()):
            setting = dict(zip(self.shape_axes, combo))
            out.append((setting, ModelSpec(input_size=self.model.input_size, **setting)))
        return out

    def work_chunk_size(self) -> int:
        """A sweep's most variants per work chunk: ``chunk_size``, or what fits ``memory_budget_mb`` if ``"auto"``.

        Raises:
          ConfigError: if not even one variant of some spec fits the budget.
        """
        self._only("sweep", "work_chunk_size()")
        a = self.analysis
        specs = [spec for _, spec in self.specs()]
        budget = int(a.memory_budget_mb * 2**20)
        sizes = {"n_profiles": len(a.wrt), "itemsize": np.dtype(a.dtype).itemsize}
        if a.chunk_size != "auto":
            try:
                check_chunk_size(specs, a.chunk_size, budget, **sizes)
            except ValueError as err:
                raise ConfigError(f"[analysis].chunk_size = {a.chunk_size}: {err} ([analysis].memory_budget_mb = "
                                  f'{a.memory_budget_mb:g}); lower chunk_size, raise memory_budget_mb or use "auto"'
                                  ) from None
            return a.chunk_size
        try:
            return auto_chunk_size(specs, budget, **sizes)
        except ValueError as err:
            raise ConfigError(f"[analysis].memory_budget_mb: {err}") from None

    def n_variants(self) -> tuple[int, int]:
        """``(grid points, shape combinations)``: the variants are their product (an npz file's sizes count as one)."""
        grid = math.prod(len(v) for v in self.grid.axes.values())
        shapes = math.prod(len(v) for v in self.shape_axes.values() if v is not None)
        return grid, shapes

    def store_bytes(self) -> int | None:
        """About how many bytes a sweep's or a collapse map's store holds (every variable of every variant);
        None for a diagnose setup, which keeps no store.

        A sweep stores per variant a profile of ``max(seq_len)`` lags, a horizon and a decay rate per
        ``wrt``, a saturation per gate and a flag; a collapse map (float32) its verdicts and ratios, the
        initial lag profile, per checkpoint the validation metrics, saturations, update ratio and
        gradient norms ``(T + 1)``, and the loss of every step (an npz file's sequence length counts as 1).
        """
        grid, shapes = self.n_variants()
        T = max(self.data.seq_len) if self.data.seq_len is not None else 1
        gates = len(GATE_NAMES)
        if self.command == "sweep":
            a = self.analysis
            per_variant = np.dtype(a.dtype).itemsize * (len(a.wrt) * (T + 2) + gates) + 1
        elif self.command == "collapse":
            t, n = self.train, max(self.data.n) if self.data.n is not None else 1
            n_train = max(1, n - max(1, round(self.data.validation * n)))
            steps = t.steps or t.epochs * math.ceil(n_train / min(t.batch_size, n_train))
            checkpoints = (t.checkpoints or 10) + 1
            per_variant = 4 * (6 + T + checkpoints * (3 + gates + 1 + T + 1) + steps) + 2
        else:
            return None
        return grid * shapes * per_variant

    def check_sizes(self) -> None:
        """Refuse, before any work and any file, a config with more than :data:`MAX_VARIANTS` variants, a
        store beyond :data:`MAX_STORE_BYTES`, or (collapse) generated data beyond ``memory_budget_mb``.

        Raises:
          ConfigError: naming the number of variants, the shape combinations and the store's size.
        """
        grid, shapes = self.n_variants()
        store = self.store_bytes()
        what = {"sweep": "the sweep", "collapse": "the collapse map", "diagnose": "the diagnose setup"}[self.command]
        counts = (f"{what} has {grid:,} variant{'s' if grid > 1 else ''} x {shapes:,} shape combination"
                  f"{'s' if shapes > 1 else ''}")
        held = f"; its store would hold about {format_bytes(store)}" if store is not None else ""
        advice = "; sweep fewer values or split the grid over several configs"
        if grid * shapes > MAX_VARIANTS:
            raise ConfigError(f"[grid]: {counts} = {grid * shapes:,} variants, more than the {MAX_VARIANTS:,} one "
                              f"config may hold{held}{advice}")
        if store is not None and store > MAX_STORE_BYTES:
            raise ConfigError(f"[grid]: {counts}; its store would hold about {format_bytes(store)}, more than the "
                              f"{format_bytes(MAX_STORE_BYTES)} one config may write{advice}")
        d = self.data
        if self.command == "collapse" and d.task != "npz":
            n, T, D = max(d.n), max(d.seq_len), self.model.input_size
            data = 4 * n * T * D
            budget = self.analysis.memory_budget_mb * 2**20
            if data > budget:
                raise ConfigError(f"[data]: {n:,} sequences of {T:,} steps x {D} feature{'s' if D > 1 else ''} take "
                                  f"{format_bytes(data)} (float32), more than the memory budget of {format_bytes(budget)} "
                                  f"([analysis].memory_budget_mb = {self.analysis.memory_budget_mb:g}), and every device "
                                  "holds them; lower [data].n or [data].seq_len, or raise the budget")

    def make_task(self, *, n: int | None = None, seq_len: int | None = None) -> Task:
        """The task of a collapse or diagnose config, ``n`` sequences of ``seq_len`` steps (default: the
        config's only value); an npz file as it is."""
        self._only(TRAINING, "make_task()")
        d = self.data
        if d.task == "npz":
            return load_task(d.path)
        (n,) = d.n if n is None else (n,)
        (seq_len,) = d.seq_len if seq_len is None else (seq_len,)
        if d.task == "seed":
            return seed_task(n, seq_len=seq_len, features=self.model.input_size, seed=d.data_seed)
        if d.task == "recall":
            return recall_task(n, seq_len=seq_len, features=self.model.input_size, noise=d.noise, seed=d.data_seed)
        return adding_task(n, seq_len=seq_len, seed=d.data_seed)

    def resolved(self) -> dict[str, dict[str, Any]]:
        """A plain, JSON-ready dict of every key this command uses, values explicit; its hash identifies a store.

        The grid holds only its axes; a sweep's ``chunk_size`` is resolved (it fixes the store's layout)
        and ``memory_budget_mb``, which only sizes chunks, is left out.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, table in TABLES.items():
            entries = {}
            for f in keys(table):
                value = getattr(getattr(self, name), f.name)
                if self.command not in users(f) or not f.metadata["resolved"] or value is None:
                    continue
                if value == f.metadata["unless"] or (f.name == "probes" and self.analysis.method != "probes"):
                    continue
                if name == "grid" and f.name not in self.grid.given:
                    continue
                entries[f.name] = list(value) if isinstance(value, tuple) else value
            if any(self.command in users(f) for f in keys(table)):
                out[name] = entries
        if self.command == "sweep":
            out["analysis"]["chunk_size"] = self.work_chunk_size()
        return out

    def _only(self, commands: str | tuple[str, ...], what: str) -> None:
        commands = (commands,) if isinstance(commands, str) else commands
        if self.command not in commands:
            raise ValueError(f"{what} is for {' and '.join(commands)} configs; this is a {self.command} config")
