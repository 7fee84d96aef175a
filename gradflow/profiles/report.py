"""Lag profiles of a user's model: the inputs they are measured on, the strict JSON of ``gradflow profile --json``
and its text table.

JSON holds no NaN or Infinity literals (RFC 8259 has none): a non-finite value is written as the string
``"-inf"`` (an exactly vanished Jacobian), ``"inf"`` (overflow) or ``"nan"``, as ``gradflow diagnose --json``
writes them; Python's ``float()`` reads each back.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.flow.engine import decay_rate, horizon
from gradflow.flow.networks import ModelProfile, model_profiles
from gradflow.lstm.model import Model

#: Computation dtypes of ``gradflow profile``.
DTYPES: tuple[str, ...] = ("float32", "float64")


def profile_inputs(model: Model, *, data: np.ndarray | None = None, seq_len: int | None = None,
                   input_seed: int = 0) -> np.ndarray:
    """The sequences a model is profiled on: ``data`` (N, T, D) as given, or one standard normal sequence (T, D)
    drawn from ``input_seed`` as a sweep draws its probe (float32 draws)."""
    if data is not None:
        if seq_len is not None:
            raise ValueError("give the data or a sequence length (--seq-len), not both")
        if data.ndim != 3 or data.shape[-1] != model.input_size:
            raise ValueError(f"data X must have shape (N, T, {model.input_size}) for this model (input size "
                             f"{model.input_size}); got {data.shape}")
        return data
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"the sequence length (--seq-len) must be a positive integer; got {seq_len!r}")
    key = jax.random.key(input_seed)
    return np.asarray(jax.random.normal(key, (int(seq_len), model.input_size), jnp.float32))


def profile_model(model: Model, xs: np.ndarray, *, dtype: str = "float32", wrt: str = "h") -> ModelProfile:
    """:func:`gradflow.flow.networks.model_profiles` of ``model`` on ``xs`` computed in ``dtype`` (float64 needs
    ``jax_enable_x64``: ValueError otherwise, never a silent float32)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; expected one of {list(DTYPES)}")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax_enable_x64 (set JAX_ENABLE_X64=1, or jax.config.update("
                         "'jax_enable_x64', True) before computing)")
    return model_profiles(model, jnp.asarray(xs, dtype), wrt=wrt)


def json_number(value: float) -> float | str:
    """A float for strict JSON: finite values as they are, others as ``"-inf"``, ``"inf"`` or ``"nan"``.

    Example:
      >>> [json_number(v) for v in (1.5, float("-inf"), float("nan"))]
      [1.5, '-inf', 'nan']
    """
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _numbers(values) -> list:
    return [json_number(v) for v in np.asarray(values, np.float64)]


def profile_json(profile: ModelProfile) -> dict:
    """The JSON object of ``gradflow profile --json``::

        {"cell": "lstm" | "gru" | "mixed",
         "layers": [{"index", "direction", "hidden_size", "lag": [1..T], "log10_norm_h": [...]}, ...],
         "input_sensitivity": {"lag": [0..T-1], "log10_norm": [...]} | null}

    ``index`` counts recurrent levels (both directions of a level share it); ``hidden_size`` is per direction. A
    model mixing cells has ``"cell": "mixed"`` and each layer its own ``"cell"``.
    """
    cells = profile.cells
    mixed = len(cells) > 1
    layers = []
    for layer in profile.layers:
        T = len(layer.log10_norm_h)
        entry = {"index": int(layer.index), "direction": layer.direction, "hidden_size": int(layer.hidden_size),
                 "lag": list(range(1, T + 1)), "log10_norm_h": _numbers(layer.log10_norm_h)}
        layers.append({**entry, "cell": layer.cell} if mixed else entry)
    q = profile.input_sensitivity
    sensitivity = None if q is None else {"lag": list(range(len(q))), "log10_norm": _numbers(q)}
    return {"cell": "mixed" if mixed else cells[0], "layers": layers, "input_sensitivity": sensitivity}


def _at(profile: np.ndarray, lag: int, first: int) -> str:
    return f"{profile[lag - first]:.2f}" if first <= lag < first + len(profile) else "-"


def profile_table(profile: ModelProfile, *, decades: float = 10.0) -> str:
    """A short text table: each layer's log10 norm at a few lags, its horizon (first lag below ``10^-decades``)
    and decay rate (decades per step); the input sensitivity likewise."""
    T = len(profile.layers[0].log10_norm_h)
    lags = sorted({lag for lag in (1, 10, 100, 1000, T) if lag <= T})
    head = ["layer", "cell", "H"] + [f"lag {lag}" for lag in lags] + [f"horizon (1e-{decades:g})", "decay /step"]
    rows = []
    for layer in profile.layers:
        p = layer.log10_norm_h
        h = float(horizon(jnp.asarray(p), decades=decades))
        rows.append([f"{layer.index} {layer.direction}", layer.cell, str(layer.hidden_size)]
                    + [_at(p, lag, 1) for lag in lags]
                    + ["never" if math.isinf(h) else f"{h:.0f}", f"{float(decay_rate(jnp.asarray(p))):.3g}"])
    q = profile.input_sensitivity
    if q is not None:
        rows.append(["input (end to end)", "", ""] + [_at(q, lag, 0) for lag in lags] + ["", ""])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [head] + rows]
    title = f"log10 ||dh_T/dh_(T-k)||_F by lag k (wrt {profile.wrt}; input row: log10 ||dh_T/dx_(T-k)||_F)"
    return "\n".join([title, *lines])
