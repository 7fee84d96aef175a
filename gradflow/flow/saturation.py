r"""Gate saturation: how often the LSTM's gates sit where their derivative is nearly zero.

A sigmoid gate ``sigma(z)`` outside ``[low, high] = [0.05, 0.95]`` has ``sigma' < 0.0475`` (a fifth of
its peak 0.25): gradients through it nearly stop. The candidate ``g = tanh(z)`` with ``|g| > 0.95``
has ``tanh' < 0.0975``. The fractions are taken over steps and units of one sequence; for an
unbounded cell activation (relu, linear) the candidate fraction counts ``|g| > 0.95`` all the same.
A sequence whose gates are not all finite has fraction NaN.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from gradflow.lstm.cell import GATE_NAMES, Gates, LSTMParams, lstm_gates

#: Default bounds: gates outside [low, high] and candidates with |g| > cell count as saturated.
SATURATION_BOUNDS = {"low": 0.05, "high": 0.95, "cell": 0.95}


#: Names of candidate values (the cell activation's output) among a cell's gates: the LSTM's ``cell``, the GRU's
#: ``candidate``; every other gate is a sigmoid gate.
CANDIDATES: tuple[str, ...] = ("cell", "candidate")


def saturated(gates: Gates | Mapping[str, jax.Array], *, low: float = 0.05, high: float = 0.95,
              cell: float = 0.95) -> dict[str, jax.Array]:
    """Boolean masks, one per gate of ``gates`` (an LSTM's :class:`Gates`, or any ``{name: values}`` such as a GRU's),
    of the saturated entries: sigmoid gates outside ``[low, high]``, candidates (:data:`CANDIDATES`) with
    ``|g| > cell``."""
    outside = lambda v: (v < low) | (v > high)  # noqa: E731
    named = gates._asdict() if isinstance(gates, tuple) else dict(gates)
    return {name: jnp.abs(v) > cell if name in CANDIDATES else outside(v) for name, v in named.items()}


def saturation_fractions(
    params: LSTMParams,
    xs: jax.Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    **bounds: float,
) -> dict[str, jax.Array]:
    """Fraction of saturated entries per gate over the steps and units of one sequence ``xs`` (T, D).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.lstm.cell import LSTMParams
      >>> p = LSTMParams(jnp.zeros((2, 12)), jnp.zeros((3, 12)), jnp.full(12, 5.0))  # every gate sigma(5) = 0.993
      >>> {k: float(v) for k, v in saturation_fractions(p, jnp.ones((4, 2))).items()}
      {'input': 1.0, 'forget': 1.0, 'cell': 1.0, 'output': 1.0}
    """
    gates = lstm_gates(params, xs, activation=activation, recurrent_activation=recurrent_activation)
    masks = saturated(gates, **bounds)
    out = {}
    for name, values, mask in zip(GATE_NAMES, gates, (masks[k] for k in GATE_NAMES)):
        # A non-finite gate has no saturation: NaN, not a fraction that silently leaves it out.
        out[name] = jnp.where(jnp.all(jnp.isfinite(values)), jnp.mean(mask.astype(xs.dtype)), jnp.nan)
    return out
