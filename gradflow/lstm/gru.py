r"""The GRU: parameters, the cell and its ``lax.scan`` unroll, in the convention PyTorch, Flax and Keras share.

Gate blocks (reset ``r``, update ``z``, candidate ``n``) along the kernels' last axis, time-major, unbatched:

.. math::

    r = \sigma(x W_r + b_r + h U_r + \beta_r), \qquad z = \sigma(x W_z + b_z + h U_z + \beta_z)

    \text{reset after (default):}\quad n = \mathrm{act}(x W_n + b_n + r \odot (h U_n + \beta_n))

    \text{reset before (Cho et al. 2014; Keras \texttt{reset\_after=False}):}\quad
    n = \mathrm{act}(x W_n + b_n + (r \odot h) U_n + \beta_n)

    h_t = (1 - z) \odot n + z \odot h_{t-1}

with ``W`` (D, 3H), ``U`` (H, 3H), the input bias ``b`` (3H,) and the recurrent bias ``β`` (3H,): PyTorch's
``weight_ih.T``, ``weight_hh.T``, ``bias_ih``, ``bias_hh`` (gate order r, z, n), Flax's ``GRUCell`` (same order,
``β = 0``); Keras orders its blocks (z, r, n), which the importer reorders. The two biases stay apart because
``β_n`` sits inside the reset product.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradflow.lstm.cell import resolve_activation, resolve_recurrent_activation

Array = jax.Array

#: GRU gate blocks, in the order of the kernels' column blocks.
GRU_GATE_NAMES: tuple[str, ...] = ("reset", "update", "candidate")


class GRUParams(NamedTuple):
    """Weights of one GRU layer (a pytree of four arrays), gate blocks (r, z, n).

    Attributes:
      W: input kernel (D, 3H).
      U: recurrent kernel (H, 3H).
      b: input bias (3H,).
      b_recurrent: recurrent bias (3H,) (``β`` in the module docstring; zeros where a framework has none).
    """

    W: Array
    U: Array
    b: Array
    b_recurrent: Array

    @property
    def hidden_size(self) -> int:
        return self.U.shape[-2]

    @property
    def input_size(self) -> int:
        return self.W.shape[-2]


def gru_step(
    params: GRUParams,
    h: Array,
    x: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
) -> Array:
    """One GRU step ``h_{t-1}, x_t -> h_t`` (see the module docstring); leading axes allowed.

    Example:
      >>> import jax.numpy as jnp
      >>> p = GRUParams(jnp.zeros((2, 9)), jnp.zeros((3, 9)), jnp.zeros(9), jnp.zeros(9))
      >>> gru_step(p, jnp.ones(3), jnp.ones(2)).tolist()  # z = 1/2, n = 0: h/2
      [0.5, 0.5, 0.5]
    """
    act = resolve_activation(activation)
    gate = resolve_recurrent_activation(recurrent_activation)
    H = params.U.shape[-2]
    x_r, x_z, x_n = jnp.split(x @ params.W + params.b, 3, axis=-1)
    U_rz, U_n = params.U[..., : 2 * H], params.U[..., 2 * H:]
    h_r, h_z = jnp.split(h @ U_rz + params.b_recurrent[..., : 2 * H], 2, axis=-1)
    r, z = gate(x_r + h_r), gate(x_z + h_z)
    if reset_after:
        n = act(x_n + r * (h @ U_n + params.b_recurrent[..., 2 * H:]))
    else:
        n = act(x_n + (r * h) @ U_n + params.b_recurrent[..., 2 * H:])
    return (1 - z) * n + z * h


def gru_unroll(
    params: GRUParams,
    xs: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    h0: Array | None = None,
) -> Array:
    """Hidden states (T, H) after 1..T inputs of ``xs`` (T, D), by ``lax.scan``; ``h0`` zeros if None."""
    options = {"activation": activation, "recurrent_activation": recurrent_activation, "reset_after": reset_after}

    def body(h, x):
        h = gru_step(params, h, x, **options)
        return h, h

    start = jnp.zeros(params.U.shape[-2:-1], params.U.dtype) if h0 is None else h0
    return jax.lax.scan(body, start, xs)[1]
