r"""Vmapped training: every variant of a grid trained at once, each with its own hyperparameters.

A variant is a :class:`gradflow.lstm.model.Model` of one forward LSTM layer and a dense head (its output
function set by the task kind, :data:`gradflow.data.tasks.HEAD_FOR_KIND`), initialised from (forget bias,
weight scale, scheme, seed) and trained with its own learning rate, decoupled weight decay, L2 penalty and
gradient-clipping norm. The optimiser is ``optax.inject_hyperparams`` of

    clip_by_global_norm(clip_norm)  ->  {adam, sgd, rmsprop}(learning_rate)  ->  - learning_rate * weight_decay * w

and the whole update is vmapped (in blocks of :data:`TRAIN_BLOCK` variants), so clipping and every
hyperparameter act per variant (a clip outside the vmap would mix variants' gradients). The loss on a minibatch is

.. math::

    L = \ell(\mathrm{head}(h_T), y) + \lambda_2 (\|W\|^2 + \|U\|^2),

with the L2 penalty on the kernel and recurrent kernel as Keras applies ``kernel_regularizer`` and
``recurrent_regularizer``, and ``\ell`` the loss of the head's output function
(:func:`gradflow.lstm.model.head_loss`: binary or softmax cross-entropy, squared error).
Training is a ``lax.scan`` over steps (minibatches of a per-variant shuffle of the training set each
epoch; the last batch of an epoch wraps around so every batch has the same size), nested in a scan
over checkpoints at which the model is evaluated on the validation set.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradflow.flow.engine import lag_norms, loss_grad_norms
from gradflow.lstm.init import init_lstm
from gradflow.lstm.cell import GATE_NAMES
from gradflow.lstm.model import Head, Layer, Model, head_logits, head_loss, head_output
from gradflow.flow.saturation import saturation_fractions
from gradflow.data.tasks import HEAD_FOR_KIND, KINDS, Task
from gradflow.flow.variants import GRID_DEFAULTS, Grid

Array = jax.Array

#: Per-variant settings a training grid may sweep, with their values when not swept.
#: ``clip_norm = 0`` means no clipping.
TRAIN_DEFAULTS: dict[str, float | int | str] = {
    **GRID_DEFAULTS,
    "scheme": "glorot_uniform",
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "l2": 0.0,
    "clip_norm": 0.0,
}

OPTIMIZERS = ("adam", "sgd", "rmsprop")

#: Variants trained together in one vmapped block; blocks run one after another (``lax.map``), so the
#: working set of backprop residuals stays in cache (measured on 2 CPU cores: 256 variants at once
#: ran 25% slower per variant than blocks of 16; see benchmarks/bench_train.py).
TRAIN_BLOCK = 16


class TrainGrid(Grid):
    """A :class:`gradflow.flow.variants.Grid` over :data:`TRAIN_DEFAULTS` (initialisation and training settings).

    Example:
      >>> g = TrainGrid(learning_rate=[1e-3, 1e-2], seed=[0, 1, 2])
      >>> g.shape, sorted(g.values())[:3]
      ((2, 3), ['clip_norm', 'forget_bias', 'l2'])
    """

    DEFAULTS = TRAIN_DEFAULTS


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """What fixes shapes or control flow in training: one compile per distinct spec.

    Attributes:
      input_size, hidden_size, seq_len, output_size: D, H, T and the head's width k.
      kind: the task kind (``binary``, ``multiclass``, ``regression``).
      activation, recurrent_activation: cell and gate activations.
      optimizer: one of :data:`OPTIMIZERS`.
      steps: training steps (minibatches).
      batch_size: sequences per minibatch.
      checkpoints: evaluations after training begins (plus one at initialisation), evenly spaced.
      grad_probe: training sequences whose ||dL/dh_t|| is recorded at each checkpoint.
    """

    input_size: int
    hidden_size: int
    seq_len: int
    output_size: int = 1
    kind: str = "binary"
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    optimizer: str = "adam"
    steps: int = 500
    batch_size: int = 32
    checkpoints: int = 4
    grad_probe: int = 4

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is not known; expected one of {list(OPTIMIZERS)}")
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not known; expected binary, multiclass or regression")
        for name in ("input_size", "hidden_size", "seq_len", "output_size", "steps", "batch_size", "checkpoints",
                     "grad_probe"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.steps % self.checkpoints:
            raise ValueError(f"steps ({self.steps}) must be a multiple of checkpoints ({self.checkpoints})")

    @classmethod
    def for_task(cls, task: Task, **settings) -> "TrainSpec":
        """The spec of ``task``'s shapes and kind with the given model and training settings."""
        return cls(input_size=task.input_size, seq_len=task.seq_len, output_size=task.output_size, kind=task.kind,
                   **settings)


def init_model(spec: TrainSpec, forget_bias, weight_scale, scheme, seed, dtype=jnp.float32) -> Model:
    """One variant's model: one forward LSTM layer with ``spec``'s activations and a Glorot-uniform dense head
    whose output function is the task kind's; traceable in every numeric argument (vmap it over a grid)."""
    key = jax.random.key(seed)
    lstm = init_lstm(jax.random.fold_in(key, 0), spec.input_size, spec.hidden_size, scheme=scheme,
                     weight_scale=weight_scale, forget_bias=forget_bias, dtype=dtype)
    limit = math.sqrt(6.0 / (spec.hidden_size + spec.output_size))  # glorot uniform, as Keras' Dense
    kernel = jax.random.uniform(jax.random.fold_in(key, 1), (spec.hidden_size, spec.output_size), jnp.float32,
                                -limit, limit).astype(dtype)
    layer = Layer(lstm, activation=spec.activation, recurrent_activation=spec.recurrent_activation)
    return Model((layer,), Head(kernel, jnp.zeros(spec.output_size, dtype), HEAD_FOR_KIND[spec.kind]))


def predict_logits(model: Model, X: Array) -> Array:
    """Head outputs (N, k) for sequences X (N, T, D): :func:`gradflow.lstm.model.head_logits` of each."""
    return jax.vmap(lambda xs: head_logits(model, xs))(X)


def predicted(output: str, logits: Array) -> Array:
    """What a head with output function ``output`` predicts from ``logits`` (N, k): probabilities (sigmoid: of
    class 1, (N,); softmax: all), values (linear)."""
    values = head_output(output, logits)
    return values[:, 0] if output == "sigmoid" else values


def accuracy(output: str, logits: Array, y: Array) -> Array:
    """Fraction classified correctly by a head with output function ``output`` (NaN for linear: regression)."""
    if output == "sigmoid":
        return jnp.mean((logits[:, 0] > 0) == (y > 0.5))
    if output == "softmax":
        return jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(y, -1))
    return jnp.array(jnp.nan, logits.dtype)


def _decoupled(base):
    """``base(learning_rate)`` followed by decoupled weight decay ``- learning_rate * weight_decay * w``."""

    def make(learning_rate, weight_decay):
        return optax.chain(base(learning_rate), optax.add_decayed_weights(-learning_rate * weight_decay))

    return make


_BASES = {"adam": optax.adam, "sgd": optax.sgd, "rmsprop": optax.rmsprop}


def make_optimizer(name: str, *, learning_rate, weight_decay, clip_norm) -> optax.GradientTransformation:
    """Per-variant optimiser with injected (traceable) hyperparameters; ``clip_norm <= 0``: no clipping."""
    max_norm = jnp.where(clip_norm > 0, clip_norm, jnp.inf)
    return optax.chain(
        optax.inject_hyperparams(optax.clip_by_global_norm)(max_norm=max_norm),
        optax.inject_hyperparams(_decoupled(_BASES[name]))(learning_rate=learning_rate, weight_decay=weight_decay),
    )


class TrainData(NamedTuple):
    """Training and validation arrays (shared by every variant)."""

    X: Array
    y: Array
    X_val: Array
    y_val: Array


def _batch_indices(key, step, n: int, batch: int) -> Array:
    """Indices of minibatch ``step``: epoch-wise shuffles, the last batch of an epoch wrapping around."""
    per_epoch = -(-n // batch)
    epoch, within = step // per_epoch, step % per_epoch
    order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    order = jnp.concatenate([order, order[: batch]])
    return jax.lax.dynamic_slice(order, (within * batch,), (batch,))


def batch_schedule(key, steps: int, n: int, batch: int) -> Array:
    """Every step's minibatch indices (steps, batch): :func:`_batch_indices` for steps 0..steps-1.

    One permutation per epoch instead of one per step (a sort per step dominated training on CPU).
    """
    per_epoch = -(-n // batch)
    epochs = -(-steps // per_epoch)
    orders = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), n))(jnp.arange(epochs))
    orders = jnp.concatenate([orders, orders[:, :batch]], axis=1)
    s = jnp.arange(steps)
    return orders[(s // per_epoch)[:, None], ((s % per_epoch) * batch)[:, None] + jnp.arange(batch)[None, :]]


def _activations(spec: TrainSpec) -> dict[str, str]:
    return {"activation": spec.activation, "recurrent_activation": spec.recurrent_activation}


def _penalised_loss(m: Model, X: Array, y: Array, *, l2: Array) -> tuple[Array, Array]:
    """``(loss, task loss)``: the head's task loss plus ``l2 (||W||^2 + ||U||^2)``, as Keras' regularisers."""
    fit = head_loss(m.head.output, predict_logits(m, X), y)
    lstm = m.layers[0].params
    return fit + l2 * (jnp.sum(lstm.W ** 2) + jnp.sum(lstm.U ** 2)), fit


def _training_step(opt: optax.GradientTransformation, l2: Array, data: TrainData, carry, idx: Array):
    """One optax step on the minibatch ``idx``: the new ``(model, state)`` and ``(task loss, ||update|| / ||weights||)``."""
    m, state = carry
    (_, fit), grads = jax.value_and_grad(_penalised_loss, has_aux=True)(m, data.X[idx], data.y[idx], l2=l2)
    updates, state = opt.update(grads, state, m)
    ratio = optax.tree.norm(updates) / (optax.tree.norm(m) + jnp.finfo(data.X.dtype).tiny)
    return (optax.apply_updates(m, updates), state), (fit, ratio)


def _evaluate(spec: TrainSpec, m: Model, data: TrainData) -> dict[str, Array]:
    """Validation loss, accuracy and prediction spread, gate saturation on the validation inputs, and
    ``log10 ||dL/dh_t||`` averaged over the first ``grad_probe`` training sequences."""
    output, acts = m.head.output, _activations(spec)
    logits = predict_logits(m, data.X_val)
    pred = predicted(output, logits)
    lstm = m.layers[0].params
    sat = jax.vmap(lambda xs: saturation_fractions(lstm, xs, **acts))(data.X_val)
    probe = data.X[: spec.grad_probe], data.y[: spec.grad_probe]

    def grad_norms(xs, y):
        head = lambda hs: head_loss(output, (hs[-1] @ m.head.kernel + m.head.bias)[None], y[None])  # noqa: E731
        return loss_grad_norms(lstm, xs, head, **acts)

    return {
        "val_loss": head_loss(output, logits, data.y_val),
        "val_accuracy": accuracy(output, logits, data.y_val),
        "val_spread": jnp.mean(jnp.std(pred.reshape(pred.shape[0], -1), axis=0)),
        **{f"saturation_{g}": jnp.mean(sat[g]) for g in GATE_NAMES},
        "log10_grad_norm": jnp.mean(jax.vmap(grad_norms)(*probe), axis=0),
    }


def _train_one(spec: TrainSpec, setting: Mapping[str, Array], data: TrainData) -> dict[str, Array]:
    """One variant: initialise, then ``checkpoints`` segments of ``steps / checkpoints`` optax steps, each
    followed by an evaluation (one more at initialisation); see :func:`train_variants` for the outputs."""
    dtype = data.X.dtype
    model = init_model(spec, setting["forget_bias"], setting["weight_scale"], setting["scheme"], setting["seed"], dtype)
    opt = make_optimizer(spec.optimizer, learning_rate=setting["learning_rate"].astype(dtype),
                         weight_decay=setting["weight_decay"].astype(dtype), clip_norm=setting["clip_norm"].astype(dtype))
    step = functools.partial(_training_step, opt, setting["l2"].astype(dtype), data)
    data_key = jax.random.fold_in(jax.random.key(setting["seed"]), 2)
    schedule = batch_schedule(data_key, spec.steps, data.X.shape[0], min(spec.batch_size, data.X.shape[0]))
    per = spec.steps // spec.checkpoints

    def segment(carry, c):
        carry, (fit, ratio) = jax.lax.scan(step, carry, jax.lax.dynamic_slice_in_dim(schedule, c * per, per))
        return carry, (fit, jnp.mean(ratio), _evaluate(spec, carry[0], data))

    first = _evaluate(spec, model, data)
    (final, _), (fits, ratios, evals) = jax.lax.scan(segment, (model, opt.init(model)), jnp.arange(spec.checkpoints))
    out = {k: jnp.concatenate([first[k][None], v]) for k, v in evals.items()}
    out.update(
        train_loss=fits.reshape(-1),
        update_ratio=ratios,
        initial_log10_norm=lag_norms(model.layers[0].params, data.X[0], wrt="h", **_activations(spec)),
        final_val_predictions=predicted(model.head.output, predict_logits(final, data.X_val)),
        final_model=final,
    )
    return out


@functools.partial(jax.jit, static_argnames=("spec",))
def train_variants(spec: TrainSpec, settings: Mapping[str, Array], data: TrainData) -> dict[str, Array]:
    """Train every variant of ``settings`` (each (V,), see :meth:`TrainGrid.values`) on ``data``.

    Returns, per variant (leading axis V): ``train_loss`` (steps,) minibatch loss without the L2
    term; at the ``checkpoints + 1`` evaluations (initialisation, then every ``steps / checkpoints``
    steps): ``val_loss``, ``val_accuracy`` (NaN for regression), ``val_spread`` (standard deviation of
    the predictions over validation inputs), ``saturation_{gate}``, ``log10_grad_norm`` (C+1, T+1)
    (log10 ||dL/dh_t|| averaged over ``grad_probe`` training sequences); ``update_ratio`` (C,) (mean
    ||update|| / ||weights|| per segment); ``initial_log10_norm`` (T,) the initial lag profile wrt
    ``h`` on the first training sequence, by lag; ``final_val_predictions`` (N_val, ...); ``final_model``
    (the trained :class:`gradflow.lstm.model.Model`, its arrays with a leading axis V).
    """
    if data.X.shape[1:] != (spec.seq_len, spec.input_size):
        raise ValueError(f"data.X must have shape (N, {spec.seq_len}, {spec.input_size}) for this spec; "
                         f"got {data.X.shape}")
    # optax mixes Python floats with integer step counts: standard promotion even in a strict session
    with jax.numpy_dtype_promotion("standard"):
        V = settings["seed"].shape[0]
        return jax.lax.map(lambda s: _train_one(spec, s, data), dict(settings), batch_size=min(V, TRAIN_BLOCK))


def train_data(train: Task, validation: Task, dtype=jnp.float32) -> TrainData:
    """Device arrays of a train/validation split."""
    return TrainData(*(jnp.asarray(a, dtype) for a in (train.X, train.y, validation.X, validation.y)))


def settings_arrays(values: Mapping[str, np.ndarray]) -> dict[str, Array]:
    """:meth:`TrainGrid.values` as the arrays :func:`train_variants` takes."""
    out = {k: jnp.asarray(v, jnp.float32) for k, v in values.items() if k not in ("scheme", "seed")}
    out["scheme"] = jnp.asarray(values["scheme"], jnp.int32)
    out["seed"] = jnp.asarray(values["seed"], jnp.uint32)
    return out
