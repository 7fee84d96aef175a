r"""Initialisation of LSTM weights, as a traceable function of its numeric settings.

Every numeric setting (``forget_bias``, ``weight_scale``, the scheme index, the seed) may be a traced
scalar, so one compiled function initialises a whole grid of variants under ``jax.vmap``. Random
numbers are drawn in float32 whatever the dtype, so a float64 model is the float32 one, refined.

Schemes (``gain`` = ``weight_scale`` multiplies both kernels):

- ``glorot_uniform``: ``W ~ U(-a, a)``, ``a = gain * sqrt(6 / (D + 4H))``; ``U`` likewise with
  ``sqrt(6 / (H + 4H))``: Keras's ``glorot_uniform`` on each whole kernel.
- ``orthogonal``: each gate block of ``U`` is ``gain`` times a Haar-random orthogonal (H, H) matrix
  and each gate block of ``W`` a random (semi-)orthogonal (D, H) one (orthonormal columns if D >= H,
  rows otherwise).
- ``normal``: entries ``N(0, gain^2 / fan_in)`` with fan_in D for ``W`` and H for ``U``.

The bias is zero except its forget-gate block, which is ``forget_bias``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.lstm.cell import LSTMParams

#: Scheme names; a scheme may also be given as its index in this tuple (traceable).
SCHEMES: tuple[str, ...] = ("glorot_uniform", "orthogonal", "normal")


def scheme_index(scheme: str | int) -> int:
    """Index of ``scheme`` in :data:`SCHEMES` (a traced index passes through); ValueError naming the argument otherwise."""
    if isinstance(scheme, str):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme={scheme!r} is not a known initialisation; expected one of {list(SCHEMES)}")
        return SCHEMES.index(scheme)
    if isinstance(scheme, (int, np.integer)) and not isinstance(scheme, bool):
        if not 0 <= scheme < len(SCHEMES):
            raise ValueError(f"scheme={scheme!r} is not an index of {list(SCHEMES)}; expected 0..{len(SCHEMES) - 1}")
        return int(scheme)
    return scheme


def _draw(sample, key, shape, dtype):
    """Random numbers drawn in float32 and cast, so a float64 model is the float32 one refined."""
    return sample(key, shape, jnp.float32).astype(dtype)


def _glorot_uniform(key, shape, dtype):
    fan_in, fan_out = shape
    limit = jnp.sqrt(jnp.asarray(6.0 / (fan_in + fan_out), dtype))
    return (2 * _draw(jax.random.uniform, key, shape, dtype) - 1) * limit


def _orthonormal_columns(key, n: int, k: int, dtype):
    """A Haar-random (n, k) matrix with orthonormal columns (k <= n).

    Gram-Schmidt, applied twice per column (CGS2, orthogonal to rounding), on a Gaussian matrix: the
    same distribution as QR with positive diagonal. Written with matmuls instead of LAPACK's QR
    because many concurrent QR custom calls in one jitted, vmapped CPU program hang jaxlib 0.10.
    """
    A = _draw(jax.random.normal, key, (n, k), dtype)

    def add_column(Q, j):
        v = A[:, j]
        for _ in range(2):
            v = v - Q @ (Q.T @ v)
        Q = Q.at[:, j].set(v / jnp.linalg.norm(v))
        return Q, None

    Q, _ = jax.lax.scan(add_column, jnp.zeros((n, k), dtype), jnp.arange(k))
    return Q


def _orthogonal_per_gate(key, shape, dtype):
    rows, four_h = shape
    cols = four_h // 4

    def block(k):
        if rows >= cols:
            return _orthonormal_columns(k, rows, cols, dtype)
        return _orthonormal_columns(k, cols, rows, dtype).T

    return jnp.concatenate([block(k) for k in jax.random.split(key, 4)], axis=-1)


def _scaled_normal(key, shape, dtype):
    return _draw(jax.random.normal, key, shape, dtype) / jnp.sqrt(jnp.asarray(shape[0], dtype))


_KERNEL_INITS = (_glorot_uniform, _orthogonal_per_gate, _scaled_normal)


def init_lstm(
    key,
    input_size: int,
    hidden_size: int,
    *,
    scheme: str | int = "orthogonal",
    weight_scale=1.0,
    forget_bias=1.0,
    dtype=jnp.float32,
):
    """Random :class:`gradflow.LSTMParams` for one variant.

    Args:
      key: a JAX PRNG key (``jax.random.key(seed)``; a traced seed is fine).
      input_size: D.
      hidden_size: H.
      scheme: a name from :data:`SCHEMES` or its (possibly traced) index.
      weight_scale: gain multiplying ``W`` and ``U`` (traceable scalar).
      forget_bias: value of the forget-gate block of ``b`` (traceable scalar).
      dtype: float dtype of the result.

    Returns:
      ``LSTMParams(W (D, 4H), U (H, 4H), b (4H,))``.

    Example:
      >>> import jax
      >>> p = init_lstm(jax.random.key(0), 3, 8, forget_bias=2.0)
      >>> float(p.b[8]), float(p.b[16])
      (2.0, 0.0)
    """
    if input_size < 1 or hidden_size < 1:
        raise ValueError(f"input_size and hidden_size must be >= 1; got {input_size} and {hidden_size}")
    index = scheme_index(scheme)
    k_w, k_u = jax.random.split(key)
    gain = jnp.asarray(weight_scale, dtype)

    def kernels(i):
        init = _KERNEL_INITS[i]
        return init(k_w, (input_size, 4 * hidden_size), dtype), init(k_u, (hidden_size, 4 * hidden_size), dtype)

    if isinstance(index, int):
        W, U = kernels(index)
    else:
        W, U = jax.lax.switch(index, [lambda i=i: kernels(i) for i in range(len(SCHEMES))])
    gate = jnp.arange(4 * hidden_size) // hidden_size
    b = jnp.where(gate == 1, jnp.asarray(forget_bias, dtype), jnp.zeros((), dtype))
    return LSTMParams(gain * W, gain * U, b)
