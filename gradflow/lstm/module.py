"""The user-facing Flax NNX shell around the functional LSTM of :mod:`gradflow.lstm.cell`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gradflow.lstm.init import init_lstm
from gradflow.lstm.cell import (
    LSTMParams,
    LSTMState,
    resolve_activation,
    resolve_recurrent_activation,
    unroll,
)

Array = jax.Array


class LSTM(nnx.Module):
    """An LSTM layer with a dense output head: the user-facing way to build and hold a model.

    The weights live in ``W``, ``U``, ``b`` (Keras layout) and ``head`` (an ``nnx.Linear``
    from the final hidden state ``h_T``). The hot path never calls this module; it runs
    on :attr:`params` with the pure functions of this file.

    Args:
      input_size: D.
      hidden_size: H.
      out_features: width of the output head.
      activation, recurrent_activation: as in :func:`lstm_step`.
      scheme: initialisation scheme (see :data:`gradflow.lstm.init.SCHEMES`).
      weight_scale: gain multiplying both kernels.
      forget_bias: value of the forget-gate block of ``b``.
      rngs: ``nnx.Rngs``; the ``params`` stream seeds the kernels and the head.
      dtype: parameter dtype.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> model = LSTM(3, 8, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((4, 20, 3))).shape
      (4, 1)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        out_features: int = 1,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        scheme: str = "orthogonal",
        weight_scale: float = 1.0,
        forget_bias: float = 1.0,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        resolve_activation(activation)
        resolve_recurrent_activation(recurrent_activation)
        p = init_lstm(
            rngs.params(),
            input_size,
            hidden_size,
            scheme=scheme,
            weight_scale=weight_scale,
            forget_bias=forget_bias,
            dtype=dtype,
        )
        self.W, self.U, self.b = nnx.Param(p.W), nnx.Param(p.U), nnx.Param(p.b)
        self.head = nnx.Linear(hidden_size, out_features, rngs=rngs, param_dtype=dtype)
        self.activation = activation
        self.recurrent_activation = recurrent_activation

    @property
    def params(self) -> LSTMParams:
        """The recurrent weights as a plain :class:`LSTMParams` pytree."""
        return LSTMParams(self.W[...], self.U[...], self.b[...])

    def states(self, xs: Array) -> LSTMState:
        """Hidden and cell states after 1..T inputs for ``xs`` (T, D); see :func:`unroll`."""
        return unroll(
            self.params, xs, activation=self.activation, recurrent_activation=self.recurrent_activation
        )

    def __call__(self, xs: Array) -> Array:
        """Head applied to ``h_T``: ``xs`` (T, D) -> (k,), or (N, T, D) -> (N, k)."""
        if xs.ndim == 3:
            return jax.vmap(self)(xs)
        return self.head(self.states(xs).h[-1])
