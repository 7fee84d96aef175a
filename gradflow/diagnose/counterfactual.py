"""Counterfactual diagnosis: train the user's setup beside the usual remedies and see which one matters.

A setup is a diagnose config (:func:`gradflow.config.load_config` with ``command="diagnose"``): a
collapse config of one model, in the same vocabulary (``configs/diagnose_seed.toml``)::

    [model]
    hidden_size = 50
    activation = "relu"
    [grid]
    forget_bias = 1.0        # Keras' unit_forget_bias
    scheme = "glorot_uniform"
    learning_rate = 0.001
    l2 = 0.0                 # on kernel and recurrent kernel, as Keras' regularisers
    seed = [0, 1, 2]
    [data]
    task = "seed"            # seed | recall | adding | npz (with path = "data.npz")
    n = 100
    seq_len = 20
    [train]
    optimizer = "adam"
    epochs = 100
    batch_size = 32

Every setting takes one value but ``[grid].seed``. gradflow trains, over those seeds each and as
vmapped variants: the setup as given; a label-shuffled control (does the data carry any signal?);
learning rate x0.1 and x10; forget bias 1; tanh instead of relu; no regularisation; orthogonal
initialisation; gradient clipping at norm 1 (each remedy only where it changes something). A remedy
*changes the outcome* when its majority verdict over the seeds (collapsed / learned / neither) differs
from the setup's.

:func:`diagnose_setup` is three steps: :func:`run_remedies` trains; :func:`loss_plateau`,
:func:`learning_rate_check` and :func:`label_shuffle_control` judge the training; the static checks of
:func:`gradflow.diagnose.checks.diagnose_model` on the trained setup (seed 0) complete the diagnosis.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.collapse.metrics import collapse_metrics, constant_loss
from gradflow.config import Config, load_config
from gradflow.data.tasks import Task
from gradflow.diagnose.checks import Diagnosis, RemedyOutcome, check_data, diagnose_model, likely_causes
from gradflow.lstm.model import Model
from gradflow.lstm.init import scheme_index
from gradflow.sweep.progress import progress
from gradflow.data.tasks import split
from gradflow.training.train import TrainSpec, train_data, train_variants


def remedies(config: Config) -> dict[str, dict]:
    """The remedies that change something in a setup: name -> changes (grid settings, ``activation``, ``shuffle``)."""
    g = config.grid
    (learning_rate,), (activation,) = g.learning_rate, config.model.activation
    out = {"as given": {}, "label_shuffle_control": {"shuffle": True},
           "learning_rate_x0.1": {"learning_rate": learning_rate * 0.1},
           "learning_rate_x10": {"learning_rate": learning_rate * 10}}
    if g.forget_bias != (1.0,):
        out["forget_bias_1"] = {"forget_bias": 1.0}
    if activation != "tanh":
        out["tanh_instead_of_" + activation] = {"activation": "tanh"}
    if g.l2 != (0.0,) or g.weight_decay != (0.0,):
        out["no_regularization"] = {"l2": 0.0, "weight_decay": 0.0}
    if g.scheme != ("orthogonal",):
        out["orthogonal_init"] = {"scheme": "orthogonal"}
    if g.clip_norm == (0.0,):
        out["gradient_clipping"] = {"clip_norm": 1.0}
    return out


@dataclasses.dataclass(frozen=True)
class RemedyRun:
    """What :func:`run_remedies` trained: every remedy's outcome, the trained setup (seed 0) and the data."""

    outcomes: dict[str, RemedyOutcome]
    model: Model
    task: Task
    train: Task
    validation: Task


def _remedy_settings(members: list[tuple[str, dict]], seeds) -> dict[str, jax.Array]:
    """The per-variant settings of a group of remedies, each over every seed (remedy-major), as arrays."""
    names = ("forget_bias", "weight_scale", "scheme", "seed", "learning_rate", "weight_decay", "l2", "clip_norm")
    columns = {k: [] for k in names}
    for _, s in members:
        for seed in seeds:
            for k in names:
                columns[k].append(seed if k == "seed" else scheme_index(s[k]) if k == "scheme" else s[k])
    dtypes = {"scheme": jnp.int32, "seed": jnp.uint32}
    return {k: jnp.asarray(v, dtypes.get(k, jnp.float32)) for k, v in columns.items()}


def run_remedies(config: Config, *, show_progress: bool = True) -> RemedyRun:
    """Train the setup and every remedy of :func:`remedies` over the seeds, as vmapped variants.

    Remedies that share a cell activation and labels train in one compiled call.
    """
    task = config.make_task()
    train, val = split(task, validation=config.data.validation, seed=config.data.data_seed)
    m, tr, g = config.model, config.train, config.grid
    steps, checkpoints = tr.schedule(train.n)
    base = {k: getattr(g, k)[0] for k in ("forget_bias", "weight_scale", "scheme", "learning_rate", "weight_decay",
                                          "l2", "clip_norm")}
    seeds = g.seed
    thresholds = {"spread": config.analysis.spread_threshold, "loss": config.analysis.loss_threshold}
    groups: dict[tuple, list] = {}
    changes = remedies(config)
    for name, change in changes.items():
        key = (change.get("activation", m.activation[0]), bool(change.get("shuffle")))
        groups.setdefault(key, []).append((name, {**base, **{k: v for k, v in change.items() if k in base}}))
    outcomes, trained = {}, None
    with progress(len(groups), desc="training setup and remedies", unit="group", enabled=show_progress) as bar:
        for (activation, shuffle), members in groups.items():
            y = np.random.default_rng(12345).permutation(train.y) if shuffle else train.y
            data = train_data(dataclasses.replace(train, y=y), val)
            spec = TrainSpec.for_task(train, hidden_size=m.hidden_size[0], activation=activation,
                                      recurrent_activation=m.recurrent_activation[0], optimizer=tr.optimizer[0],
                                      steps=steps, batch_size=min(tr.batch_size, train.n), checkpoints=checkpoints,
                                      grad_probe=min(tr.grad_probe, train.n))
            with jax.numpy_dtype_promotion("standard"):
                out = jax.tree.map(np.asarray, train_variants(spec, _remedy_settings(members, seeds), data))
            metrics = collapse_metrics(val.kind, val.y, out["val_loss"][:, -1], out["val_accuracy"][:, -1],
                                       out["val_spread"][:, -1], thresholds=thresholds)
            S = len(seeds)
            for i, (name, _) in enumerate(members):
                sl = slice(i * S, (i + 1) * S)
                outcomes[name] = RemedyOutcome(name, metrics["collapsed"][sl], metrics["learned"][sl],
                                               out["val_loss"][sl, -1], out["val_accuracy"][sl, -1],
                                               out["train_loss"][sl], out["update_ratio"][sl])
                if name == "as given":
                    trained = jax.tree.map(lambda a: np.asarray(a[i * S]), out["final_model"])  # its first seed
            bar.update(1)
    return RemedyRun({k: outcomes[k] for k in changes}, trained, task, train, val)


def loss_plateau(outcome: RemedyOutcome, *, t) -> dict:
    """Relative improvement of the training loss, last tenth of the steps against the first (mean over seeds)."""
    loss = outcome.train_loss
    k = max(1, loss.shape[1] // 10)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):  # a non-finite loss is data (a blow-up)
        warnings.simplefilter("ignore", RuntimeWarning)
        first, last = np.nanmean(loss[:, :k]), np.nanmean(loss[:, -k:])
        improvement = float((first - last) / max(abs(first), 1e-12))
    if not np.isfinite(improvement):  # a NaN or infinite loss: the training blew up, it did not improve
        improvement = float("-inf")
    return {"status": "fail" if improvement < t["plateau_improvement"] else "ok",
            "relative_improvement": improvement, "first_tenth_loss": float(first), "last_tenth_loss": float(last)}


def learning_rate_check(outcome: RemedyOutcome, plateau: dict, *, t) -> dict:
    """Update-to-weight ratios and divergence: ``too_high`` (a blow-up, or a segment's mean ratio above
    ``update_ratio_high``), ``too_low`` (median below ``update_ratio_low``) or ``fine``."""
    first, last = plateau["first_tenth_loss"], plateau["last_tenth_loss"]
    ratios = np.where(np.isfinite(outcome.update_ratio), outcome.update_ratio, np.inf)  # NaN weights: a blow-up
    median, peak = float(np.median(ratios)), float(np.max(ratios))
    diverged = (not np.isfinite(last)) or last > 1.5 * first
    too_high = diverged or peak > t["update_ratio_high"]
    direction = "too_high" if too_high else "too_low" if median < t["update_ratio_low"] else ""
    return {"status": "fail" if direction else "ok", "direction": direction or "fine",
            "median_update_to_weight_ratio": median, "max_update_to_weight_ratio": peak, "diverged": bool(diverged)}


def label_shuffle_control(data_check: dict, base: RemedyOutcome, control: RemedyOutcome, validation: Task) -> dict:
    """The data check with the shuffled-label control added: the real labels carry signal when they beat both
    the shuffled control and the best constant predictor by 5% on held-out data (else at least a warning)."""
    reference = min(float(np.nanmean(control.final_val_loss)), constant_loss(validation.kind, validation.y))
    no_signal = not bool(np.nanmean(base.final_val_loss) < 0.95 * reference)
    status = "warn" if no_signal and data_check["status"] == "ok" else data_check["status"]
    return {**data_check, "status": status,
            "label_shuffle_control": "no difference" if no_signal else "the real labels do better",
            "val_loss_real_vs_shuffled": [float(np.nanmean(base.final_val_loss)),
                                          float(np.nanmean(control.final_val_loss))]}


def diagnose_setup(path_or_setup, *, thresholds=None, show_progress: bool = True) -> Diagnosis:
    """Train a setup beside its remedies and diagnose it.

    The static checks run on the trained setup (seed 0) and its validation data; the data check on all the
    data, with the label-shuffled control; the loss-plateau and learning-rate checks on the training of every
    seed; the collapse verdict is the majority over the seeds.

    Args:
      path_or_setup: a diagnose :class:`gradflow.config.Config`, or the path of its TOML file.
      thresholds: overrides of :data:`gradflow.diagnose.checks.THRESHOLDS`.
      show_progress: a progress bar over the groups of remedies.
    """
    setup = path_or_setup if isinstance(path_or_setup, Config) else load_config(path_or_setup, command="diagnose")
    if setup.command != "diagnose":
        raise ValueError(f"diagnose_setup takes a diagnose config; got a {setup.command} config")
    run = run_remedies(setup, show_progress=show_progress)
    static = diagnose_model(run.model, run.validation, thresholds=thresholds)
    t = static.thresholds
    base = run.outcomes["as given"]
    plateau = loss_plateau(base, t=t)
    collapsed = base.verdict == "collapsed"
    fraction = float(np.mean(base.collapsed))
    output = static.checks["output_collapse"]
    checks = {
        **static.checks,
        "output_collapse": {**output, "status": "fail" if collapsed else "warn" if fraction > 0 else "ok",
                            "collapsed_fraction_over_seeds": fraction,
                            "note": output["note"] + "; spread and loss of seed 0 on the validation set, "
                                                     "status from all seeds"},
        "data_variability": label_shuffle_control(check_data(run.task, t=t), base,
                                                  run.outcomes["label_shuffle_control"], run.validation),
        "loss_plateau": plateau,
        "learning_rate": learning_rate_check(base, plateau, t=t),
    }
    return dataclasses.replace(static, collapsed=collapsed, checks=checks, likely_causes=likely_causes(checks),
                               remedy_outcomes=run.outcomes)
