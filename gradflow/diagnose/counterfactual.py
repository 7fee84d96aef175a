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
initialisation; gradient clipping at norm 1 (each remedy only where it changes something). A remedy *changes the outcome* when its majority verdict over
the seeds (collapsed / learned / neither) differs from the setup's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.collapse.metrics import collapse_metrics, constant_loss
from gradflow.config import Config, load_config
from gradflow.diagnose.checks import Diagnosis, check_data, diagnose_model, likely_causes
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


def run_remedies(config: Config, *, show_progress: bool = True):
    """Train the setup and every remedy over the seeds; returns (outcomes, baseline models, task split)."""
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
    outcomes, baseline_models = {}, None
    with progress(len(groups), desc="training setup and remedies", unit="group", enabled=show_progress) as bar:
        for (activation, shuffle), members in groups.items():
            y = np.random.default_rng(12345).permutation(train.y) if shuffle else train.y
            data = train_data(dataclasses.replace(train, y=y), val)
            spec = TrainSpec.for_task(train, hidden_size=m.hidden_size[0], activation=activation,
                                      recurrent_activation=m.recurrent_activation[0], optimizer=tr.optimizer[0],
                                      steps=steps, batch_size=min(tr.batch_size, train.n), checkpoints=checkpoints,
                                      grad_probe=min(tr.grad_probe, train.n))
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
                                       out["val_spread"][:, -1], thresholds=thresholds)
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
    setup = path_or_setup if isinstance(path_or_setup, Config) else load_config(path_or_setup, command="diagnose")
    if setup.command != "diagnose":
        raise ValueError(f"diagnose_setup takes a diagnose config; got a {setup.command} config")
    outcomes, models, (task, train, val) = run_remedies(setup, show_progress=show_progress)
    model = jax.tree.map(lambda a: np.asarray(a[0]), models)  # seed 0 of the trained setup
    d = diagnose_model(model, val, thresholds=thresholds)
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
