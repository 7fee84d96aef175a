r"""Model variants: a shape spec compiled once, a grid of numeric settings vmapped over.

What fixes shapes or Python control flow (input and hidden size, activations, sequence length) is a
frozen, hashable :class:`ModelSpec`: one compile per distinct spec. What is a number (forget bias,
weight scale, initialisation scheme index, seed) lives in a :class:`Grid` whose cartesian product is
flattened to arrays with a leading variants axis V: new values of the same shapes never recompile.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.flow.engine import VARIANT_BLOCK, WRT, decay_rate, horizon
from gradflow.flow.methods import estimate_lag_norms, lyapunov_with_stderr
from gradflow.lstm.init import SCHEMES, init_lstm, scheme_index
from gradflow.lstm.cell import LSTMParams, resolve_activation, resolve_recurrent_activation
from gradflow.flow.saturation import GATE_NAMES, saturation_fractions

#: Numeric axes a grid may sweep, with the value used when an axis is not swept.
GRID_DEFAULTS: dict[str, float | int | str] = {
    "forget_bias": 1.0,
    "weight_scale": 1.0,
    "scheme": "orthogonal",
    "seed": 0,
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes shapes or control flow; one compile per distinct spec.

    Attributes:
      input_size: D, features per step.
      hidden_size: H.
      seq_len: T, steps per sequence.
      activation: cell activation name.
      recurrent_activation: gate activation name.
    """

    input_size: int
    hidden_size: int
    seq_len: int
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"

    def __post_init__(self):
        for name in ("input_size", "hidden_size", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        resolve_activation(self.activation)
        resolve_recurrent_activation(self.recurrent_activation)


class Grid:
    """A cartesian grid of numeric model settings, flattened in C order (last axis fastest).

    Args:
      **axes: axis name (a key of :data:`GRID_DEFAULTS`) -> sequence of values. Axes not given take
        their default. ``scheme`` values are names from :data:`gradflow.lstm.init.SCHEMES`.

    Example:
      >>> g = Grid(forget_bias=[0.0, 1.0, 2.0], seed=[0, 1])
      >>> g.shape, g.size, g.values()["forget_bias"].tolist()
      ((3, 2), 6, [0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    """

    #: The axes this kind of grid may sweep, with their values when not swept.
    DEFAULTS: Mapping[str, float | int | str] = GRID_DEFAULTS

    def __init__(self, **axes: Sequence):
        unknown = sorted(set(axes) - set(self.DEFAULTS))
        if unknown:
            raise ValueError(f"unknown grid axis {unknown}; expected some of {sorted(self.DEFAULTS)}")
        self.axes: dict[str, tuple] = {}
        for name, values in axes.items():
            values = tuple(np.atleast_1d(np.asarray(values)).tolist())
            if not values:
                raise ValueError(f"grid axis {name!r} is empty; give at least one value")
            if name == "scheme":
                for v in values:
                    scheme_index(v)
            elif not all(isinstance(v, (int, float)) and np.isfinite(v) for v in values):
                raise ValueError(f"grid axis {name!r} must hold finite numbers; got {list(values)}")
            if name == "seed" and not all(float(v).is_integer() and 0 <= v < 2**32 for v in values):
                raise ValueError(f"grid axis 'seed' must hold integers in [0, 2**32); got {list(values)}")
            self.axes[name] = values

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def values(self) -> dict[str, np.ndarray]:
        """Every setting of :attr:`DEFAULTS` as a flat (V,) array (schemes as indices), without a Python
        list of the V combinations."""
        shape, out = self.shape, {}
        for name, default in self.DEFAULTS.items():
            if name == "scheme":
                axis_values = np.array([scheme_index(s) for s in self.axes.get(name, (default,))], np.int32)
            elif name == "seed":
                axis_values = np.array(self.axes.get(name, (default,)), np.int64).astype(np.uint32)
            else:
                axis_values = np.array(self.axes.get(name, (default,)), np.float64)
            if name in self.axes:
                at = self.names.index(name)
                index = np.arange(self.size) // int(np.prod(shape[at + 1:], dtype=np.int64)) % shape[at]
                out[name] = axis_values[index]
            else:
                out[name] = np.full(self.size, axis_values[0])
        return out


def init_variants(spec: ModelSpec, values: Mapping[str, jax.Array], *, dtype=jnp.float32) -> LSTMParams:
    """:class:`LSTMParams` with a leading variants axis, one per entry of ``values`` (see :meth:`Grid.values`)."""

    def one(forget_bias, weight_scale, scheme, seed):
        return init_lstm(
            jax.random.key(seed), spec.input_size, spec.hidden_size,
            scheme=scheme, weight_scale=weight_scale, forget_bias=forget_bias, dtype=dtype,
        )

    return jax.vmap(one)(
        jnp.asarray(values["forget_bias"], dtype),
        jnp.asarray(values["weight_scale"], dtype),
        jnp.asarray(values["scheme"], jnp.int32),
        jnp.asarray(values["seed"], jnp.uint32),
    )


def probe_inputs(spec: ModelSpec, *, seed: int = 0, dtype=jnp.float32) -> jax.Array:
    """The input sequence (T, D) that lag profiles are measured on: standard normal (drawn in float32), fixed seed."""
    return jax.random.normal(jax.random.key(seed), (spec.seq_len, spec.input_size), jnp.float32).astype(dtype)


#: Folded into a variant's seed for its probe vectors: a stream apart from its initialisation's.
PROBE_STREAM = 0x9E3779B9


@functools.partial(jax.jit, static_argnames=("spec", "wrt", "decades", "method", "probes", "lyapunov"))
def profile_variants(
    spec: ModelSpec,
    values: Mapping[str, jax.Array],
    xs: jax.Array,
    *,
    wrt: tuple[str, ...] = WRT,
    decades: float = 10.0,
    method: str = "exact",
    probes: int = 16,
    lyapunov: int = 0,
) -> dict[str, jax.Array]:
    """Lag profiles and their summaries for a batch of variants: one compile per (spec, wrt, decades, method, ...).

    Args:
      spec: the shapes and activations.
      values: numeric settings, each (V,) (see :meth:`Grid.values`).
      xs: probe inputs (T, D).
      wrt: which profiles to compute (names from :data:`gradflow.flow.engine.WRT`).
      decades: threshold exponent k of the horizon ``10^-k``.
      method: how profiles are computed, a :class:`gradflow.flow.methods.Method` name. With ``"probes"``
        each variant's probes come from its own seed (folded with :data:`PROBE_STREAM`), so its estimate
        does not depend on the variants computed with it.
      probes: probe vectors per profile (``"probes"`` only).
      lyapunov: number k of leading Lyapunov exponents of the state (0: none).

    Returns:
      For each ``w`` in ``wrt``: ``log10_norm_{w}`` (V, T) indexed by lag 1..T, ``horizon_{w}`` (V,)
      and ``decay_rate_{w}`` (V,) (of the estimate, for ``"probes"``), and for ``"probes"``
      ``stderr_log10_norm_{w}`` (V, T) in decades; ``saturation_{gate}`` (V,) for each gate of
      :data:`gradflow.flow.saturation.GATE_NAMES` (on the probe inputs); ``nonfinite`` (V,) bool, true
      where a profile holds NaN or +inf (an exactly zero Jacobian, -inf, is a finite outcome); with
      ``lyapunov = k``, ``lyapunov`` and ``stderr_lyapunov`` (V, k), natural log per step
      (:func:`gradflow.flow.methods.lyapunov_with_stderr`).
    """
    params = init_variants(spec, values, dtype=xs.dtype)
    activations = {"activation": spec.activation, "recurrent_activation": spec.recurrent_activation}
    keys = None
    if method == "probes":
        keys = jax.vmap(lambda seed: jax.random.fold_in(jax.random.key(seed), PROBE_STREAM))(
            jnp.asarray(values["seed"], jnp.uint32))
    out = {}
    nonfinite = jnp.zeros(params.U.shape[0], bool)
    for w in wrt:
        profile, stderr = estimate_lag_norms(params, xs, method=method, wrt=w, key=keys, probes=probes, **activations)
        out[f"log10_norm_{w}"] = profile
        if stderr is not None:
            out[f"stderr_log10_norm_{w}"] = stderr
        out[f"horizon_{w}"] = horizon(profile, decades=decades)
        out[f"decay_rate_{w}"] = decay_rate(profile)
        nonfinite = nonfinite | jnp.any(jnp.isnan(profile) | jnp.isposinf(profile), axis=-1)
    block = min(params.U.shape[0], VARIANT_BLOCK)
    fractions = jax.lax.map(lambda p: saturation_fractions(p, xs, **activations), params, batch_size=block)
    out.update({f"saturation_{gate}": fractions[gate] for gate in GATE_NAMES})
    out["nonfinite"] = nonfinite
    if lyapunov:
        out["lyapunov"], out["stderr_lyapunov"] = jax.lax.map(
            lambda p: lyapunov_with_stderr(p, xs, k=lyapunov, **activations), params, batch_size=block)
    return out


__all__ = ["GRID_DEFAULTS", "PROBE_STREAM", "Grid", "ModelSpec", "SCHEMES", "init_variants", "probe_inputs", "profile_variants"]
