"""Counterfactual diagnosis: train the user's setup beside the usual remedies and see which one matters.

A setup file (TOML) describes the data, the model and the training::

    [data]
    task = "seed"            # seed | recall | adding | npz (with path = "data.npz")
    n = 100
    seq_len = 20
    features = 10
    [model]
    hidden_size = 50
    activation = "relu"
    scheme = "glorot_uniform"
    forget_bias = 1.0        # Keras' unit_forget_bias
    [train]
    optimizer = "adam"
    learning_rate = 0.001
    epochs = 100
    batch_size = 32
    l2 = 0.0                 # on kernel and recurrent kernel, as Keras' regularisers
    seeds = 3

gradflow trains, over ``seeds`` seeds each and as vmapped variants: the setup as given; a
label-shuffled control (does the data carry any signal?); learning rate x0.1 and x10; forget bias 1;
tanh instead of relu; no regularisation; orthogonal initialisation; gradient clipping at norm 1 (each
remedy only where it changes something). A remedy *changes the outcome* when its majority verdict over
the seeds (collapsed / learned / neither) differs from the setup's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.collapse.metrics import collapse_metrics, constant_loss
from gradflow.config.profiles import ConfigError, _ints, _names, read_config_file, read_tables
from gradflow.diagnose.checks import Diagnosis, check_data, diagnose_model, likely_causes
from gradflow.lstm.init import SCHEMES, scheme_index
from gradflow.lstm.cell import ACTIVATIONS, LSTMParams
from gradflow.sweep.progress import progress
from gradflow.data.tasks import adding_task, load_task, recall_task, seed_task, split
from gradflow.training.train import OPTIMIZERS, TrainSpec, train_data, train_variants
from gradflow.data.weights import TrainedModel

SCHEMA: dict[str, dict[str, Any]] = {
    "data": {"task": None, "n": 100, "seq_len": 20, "features": None, "noise": 1.0, "path": None,
             "validation": 0.2, "data_seed": 0},
    "model": {"hidden_size": 50, "activation": "tanh", "scheme": "glorot_uniform", "forget_bias": 1.0},
    "train": {"optimizer": "adam", "learning_rate": 1e-3, "epochs": 100, "batch_size": 32, "l2": 0.0,
              "weight_decay": 0.0, "clip_norm": 0.0, "seeds": 3},
}


@dataclasses.dataclass(frozen=True)
class Setup:
    """A parsed training setup."""

    task: dict
    model: dict
    train: dict
    source: str = ""


def parse_setup(text: str, *, source_name: str = "setup", base_dir: Path | None = None) -> Setup:
    """Parse and validate a setup (see the module docstring); errors name the key."""
    _, t = read_tables(text, SCHEMA, source_name=source_name, required=False)
    d, m, tr = t["data"], t["model"], t["train"]
    if d["task"] is None:
        raise ConfigError("[data].task is required: one of seed, recall, adding, npz")
    _names("[data].task", [d["task"]], ("seed", "recall", "adding", "npz"))
    if d["task"] == "npz":
        if not isinstance(d["path"], str):
            raise ConfigError('[data].path must name the .npz file for task = "npz"')
        path = Path(d["path"]) if base_dir is None or Path(d["path"]).is_absolute() else base_dir / d["path"]
        d["path"] = str(path)
    for key in ("n", "seq_len"):
        _ints(f"[data].{key}", [d[key]], minimum=2 if key == "n" else 1)
    _ints("[model].hidden_size", [m["hidden_size"]])
    _names("[model].activation", [m["activation"]], ACTIVATIONS)
    _names("[model].scheme", [m["scheme"]], SCHEMES)
    _names("[train].optimizer", [tr["optimizer"]], OPTIMIZERS)
    for key in ("epochs", "batch_size", "seeds"):
        _ints(f"[train].{key}", [tr[key]])
    for table, key in (("model", "forget_bias"), ("train", "learning_rate"), ("train", "l2"), ("train", "weight_decay"),
                       ("train", "clip_norm"), ("data", "validation"), ("data", "noise")):
        value = t[table][key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ConfigError(f"[{table}].{key} must be a finite number; got {value!r}")
    if not tr["learning_rate"] > 0:
        raise ConfigError(f"[train].learning_rate must be positive; got {tr['learning_rate']}")
    return Setup(d, m, tr, text)


def load_setup(path: str | Path) -> Setup:
    """Read and validate a setup file; a relative data path is relative to the file."""
    text, path = read_config_file(path, what="setup")
    return parse_setup(text, source_name=str(path), base_dir=path.parent)


def make_task(setup: Setup):
    d = setup.task
    if d["task"] == "npz":
        return load_task(d["path"])
    if d["task"] == "seed":
        return seed_task(d["n"], seq_len=d["seq_len"], features=d["features"] or 10, seed=d["data_seed"])
    if d["task"] == "recall":
        return recall_task(d["n"], seq_len=d["seq_len"], features=d["features"] or 1, noise=d["noise"], seed=d["data_seed"])
    return adding_task(d["n"], seq_len=d["seq_len"], seed=d["data_seed"])


def remedies(setup: Setup) -> dict[str, dict]:
    """The remedies that change something in ``setup``: name -> changes (settings, ``activation``, ``shuffle``)."""
    m, tr = setup.model, setup.train
    out = {"as given": {}, "label_shuffle_control": {"shuffle": True},
           "learning_rate_x0.1": {"learning_rate": tr["learning_rate"] * 0.1},
           "learning_rate_x10": {"learning_rate": tr["learning_rate"] * 10}}
    if m["forget_bias"] != 1.0:
        out["forget_bias_1"] = {"forget_bias": 1.0}
    if m["activation"] != "tanh":
        out["tanh_instead_of_" + m["activation"]] = {"activation": "tanh"}
    if tr["l2"] or tr["weight_decay"]:
        out["no_regularization"] = {"l2": 0.0, "weight_decay": 0.0}
    if m["scheme"] != "orthogonal":
        out["orthogonal_init"] = {"scheme": "orthogonal"}
    if not tr["clip_norm"]:
        out["gradient_clipping"] = {"clip_norm": 1.0}
    return out


def _checkpoints(steps: int) -> int:
    return max(c for c in range(1, 11) if steps % c == 0)


@dataclasses.dataclass
class RemedyOutcome:
    name: str
    collapsed: np.ndarray  # (seeds,)
    learned: np.ndarray
    final_val_loss: np.ndarray
    val_accuracy: np.ndarray
    train_loss: np.ndarray  # (seeds, steps)
    update_ratio: np.ndarray  # (seeds, C)
    verdict: str = ""


def _verdict(collapsed: np.ndarray, learned: np.ndarray) -> str:
    c, l = np.mean(collapsed), np.mean(learned)
    return "collapsed" if c >= 0.5 else "learned" if l > 0.5 else "neither"


def run_remedies(setup: Setup, *, show_progress: bool = True):
    """Train the setup and every remedy over the seeds; returns (outcomes, baseline models, task split)."""
    task = make_task(setup)
    train, val = split(task, validation=setup.task["validation"], seed=setup.task["data_seed"])
    m, tr = setup.model, setup.train
    per_epoch = -(-train.n // min(tr["batch_size"], train.n))
    steps = tr["epochs"] * per_epoch
    base = {"forget_bias": m["forget_bias"], "weight_scale": 1.0, "scheme": m["scheme"],
            "learning_rate": tr["learning_rate"], "weight_decay": tr["weight_decay"], "l2": tr["l2"],
            "clip_norm": tr["clip_norm"]}
    seeds = np.arange(tr["seeds"])
    groups: dict[tuple, list] = {}
    changes = remedies(setup)
    for name, change in changes.items():
        key = (change.get("activation", m["activation"]), bool(change.get("shuffle")))
        groups.setdefault(key, []).append((name, {**base, **{k: v for k, v in change.items() if k in base}}))
    outcomes, baseline_models = {}, None
    with progress(len(groups), desc="training setup and remedies", unit="group", enabled=show_progress) as bar:
        for (activation, shuffle), members in groups.items():
            y = np.random.default_rng(12345).permutation(train.y) if shuffle else train.y
            data = train_data(dataclasses.replace(train, y=y), val)
            spec = TrainSpec.for_task(train, hidden_size=m["hidden_size"], activation=activation,
                                      optimizer=tr["optimizer"], steps=steps, batch_size=min(tr["batch_size"], train.n),
                                      checkpoints=_checkpoints(steps), grad_probe=min(4, train.n))
            settings = {k: [] for k in ("forget_bias", "weight_scale", "scheme", "seed", "learning_rate",
                                         "weight_decay", "l2", "clip_norm")}
            for _, s in members:
                for seed in seeds:
                    for k in settings:
                        settings[k].append(seed if k == "seed" else scheme_index(s[k]) if k == "scheme" else s[k])
            arrays = {k: jnp.asarray(v, jnp.int32 if k == "scheme" else jnp.uint32 if k == "seed" else jnp.float32)
                      for k, v in settings.items()}
            with jax.numpy_dtype_promotion("standard"):
                out = jax.tree.map(np.asarray, train_variants(spec, arrays, data))
            metrics = collapse_metrics(val.kind, val.y, out["val_loss"][:, -1], out["val_accuracy"][:, -1],
                                       out["val_spread"][:, -1])
            S = len(seeds)
            for i, (name, _) in enumerate(members):
                sl = slice(i * S, (i + 1) * S)
                outcome = RemedyOutcome(name, metrics["collapsed"][sl], metrics["learned"][sl],
                                        out["val_loss"][sl, -1], out["val_accuracy"][sl, -1], out["train_loss"][sl],
                                        out["update_ratio"][sl])
                outcome.verdict = _verdict(outcome.collapsed, outcome.learned)
                outcomes[name] = outcome
                if name == "as given":
                    baseline_models = jax.tree.map(lambda a: a[sl], out["final_model"])
            bar.update(1)
    return {k: outcomes[k] for k in changes}, baseline_models, (task, train, val)


def diagnose_setup(path_or_setup, *, thresholds=None, show_progress: bool = True) -> Diagnosis:
    """Train a setup beside its remedies; the static checks on the trained setup (seed 0), plus the
    loss-plateau and learning-rate checks and the remedies' outcomes."""
    setup = path_or_setup if isinstance(path_or_setup, Setup) else load_setup(path_or_setup)
    outcomes, models, (task, train, val) = run_remedies(setup, show_progress=show_progress)
    model = TrainedModel(LSTMParams(*(np.asarray(a[0]) for a in models.lstm)), np.asarray(models.kernel[0]),
                         np.asarray(models.bias[0]), "trained")
    d = diagnose_model(model, val, activation=setup.model["activation"], thresholds=thresholds)
    t = d.thresholds
    d.checks["data_variability"] = check_data(task, t=t)  # all the data, not only the validation part
    base = outcomes["as given"]
    loss = base.train_loss
    k = max(1, loss.shape[1] // 10)
    first, last = np.nanmean(loss[:, :k]), np.nanmean(loss[:, -k:])
    improvement = float((first - last) / max(abs(first), 1e-12)) if np.isfinite(last) else float("-inf")
    d.checks["loss_plateau"] = {"status": "fail" if improvement < t["plateau_improvement"] else "ok",
                                "relative_improvement": improvement, "first_tenth_loss": float(first),
                                "last_tenth_loss": float(last)}
    ratios = np.where(np.isfinite(base.update_ratio), base.update_ratio, np.inf)  # NaN weights: a blow-up
    median, peak = float(np.median(ratios)), float(np.max(ratios))
    diverged = (not np.isfinite(last)) or last > 1.5 * first
    too_high = diverged or peak > t["update_ratio_high"]
    direction = "too_high" if too_high else "too_low" if median < t["update_ratio_low"] else ""
    d.checks["learning_rate"] = {"status": "fail" if direction else "ok", "direction": direction or "fine",
                                 "median_update_to_weight_ratio": median, "max_update_to_weight_ratio": peak,
                                 "diverged": bool(diverged)}
    control = outcomes["label_shuffle_control"]
    # signal: the real labels beat both the shuffled control and the best constant by 5% on held-out data
    reference = min(float(np.nanmean(control.final_val_loss)), constant_loss(val.kind, val.y))
    no_signal = not bool(np.nanmean(base.final_val_loss) < 0.95 * reference)
    d.checks["data_variability"]["label_shuffle_control"] = "no difference" if no_signal else "the real labels do better"
    d.checks["data_variability"]["val_loss_real_vs_shuffled"] = [float(np.nanmean(base.final_val_loss)),
                                                                 float(np.nanmean(control.final_val_loss))]
    if no_signal and d.checks["data_variability"]["status"] == "ok":
        d.checks["data_variability"]["status"] = "warn"
    d.collapsed = base.verdict == "collapsed"
    oc = d.checks["output_collapse"]
    fraction = float(np.mean(base.collapsed))
    oc.update(status="fail" if d.collapsed else "warn" if fraction > 0 else "ok", collapsed_fraction_over_seeds=fraction,
              note=oc["note"] + "; spread and loss of seed 0 on the validation set, status from all seeds")
    d.likely_causes = likely_causes(d.checks)
    d.extras["remedies"] = outcomes
    d.extras["markdown"] = remedy_table(outcomes)
    d.remedies = {n: {"verdict": o.verdict, "collapsed_fraction": float(np.mean(o.collapsed)),
                      "learned_fraction": float(np.mean(o.learned)), "val_loss": float(np.nanmean(o.final_val_loss)),
                      "changes_outcome": o.verdict != base.verdict} for n, o in outcomes.items()}
    return d


def remedy_table(outcomes: dict[str, RemedyOutcome]) -> list[str]:
    base = outcomes["as given"].verdict
    lines = ["## Remedies, trained side by side", "",
             "| remedy | verdict (majority of seeds) | collapsed | learned | val loss | val accuracy | changes the outcome |",
             "|---|---|---|---|---|---|---|"]
    for name, o in outcomes.items():
        lines.append(f"| {name} | {o.verdict} | {np.mean(o.collapsed):.0%} | {np.mean(o.learned):.0%} | "
                     f"{np.nanmean(o.final_val_loss):.3f} | {np.nanmean(o.val_accuracy):.3f} | "
                     f"{'-' if name == 'as given' else ('yes' if o.verdict != base else 'no')} |")
    return lines
