"""The user-facing Flax NNX shell around the functional LSTM of :mod:`gradflow.lstm.cell`.

It holds a :class:`gradflow.lstm.model.Model` of one forward LSTM layer and a dense head as NNX parameters:
:attr:`LSTM.model` gives that representation, :meth:`LSTM.from_model` builds the shell from one.
"""

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
from gradflow.lstm.model import HEAD_OUTPUTS, Head, Layer, Model, head_logits

Array = jax.Array


class LSTM(nnx.Module):
    """An LSTM layer with a dense output head: the user-facing way to build and hold a model.

    The weights live in ``W``, ``U``, ``b`` (Keras layout) and ``head`` (an ``nnx.Linear``
    from the final hidden state ``h_T``). The hot path never calls this module; it runs
    on :attr:`model` (or :attr:`params`) with the pure functions of :mod:`gradflow.lstm.model`
    and :mod:`gradflow.lstm.cell`. Calling the module gives the head's logits.

    Args:
      input_size: D.
      hidden_size: H.
      out_features: width of the output head.
      activation, recurrent_activation: as in :func:`lstm_step`.
      scheme: initialisation scheme (see :data:`gradflow.lstm.init.SCHEMES`).
      weight_scale: gain multiplying both kernels.
      forget_bias: value of the forget-gate block of ``b``.
      head_output: the head's output function in :attr:`model` (see
        :data:`gradflow.lstm.model.HEAD_OUTPUTS`); the module itself returns logits.
      rngs: ``nnx.Rngs``; the ``params`` stream seeds the kernels and the head.
      dtype: parameter dtype.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> model = LSTM(3, 8, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((4, 20, 3))).shape
      (4, 1)
      >>> LSTM.from_model(model.model).model.hidden_size
      8
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
        head_output: str = "linear",
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        resolve_activation(activation)
        resolve_recurrent_activation(recurrent_activation)
        if head_output not in HEAD_OUTPUTS:
            raise ValueError(f"head_output={head_output!r} is not a known head output; expected one of "
                             f"{list(HEAD_OUTPUTS)}")
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
        self.head_output = head_output

    @classmethod
    def from_model(cls, model: Model) -> LSTM:
        """The module holding ``model``'s weights (no random draws): one forward LSTM layer with a head.

        Raises:
          ValueError: for any other stack, or a model without a head.
        """
        layer = model.single_layer()
        if layer is None or layer.cell != "lstm" or model.head is None:
            raise ValueError("LSTM.from_model takes a model of one forward LSTM layer with a head; got "
                             f"{len(model.layers)} level(s), head {'absent' if model.head is None else 'present'}")
        p, head = layer.params, model.head
        dtype = jnp.result_type(p.W)
        settings = {"out_features": model.output_size, "activation": layer.activation,
                    "recurrent_activation": layer.recurrent_activation, "head_output": head.output, "dtype": dtype}
        module = nnx.eval_shape(lambda: cls(p.input_size, p.hidden_size, rngs=nnx.Rngs(0), **settings))
        module.W, module.U, module.b = (nnx.Param(jnp.asarray(a, dtype)) for a in p)
        module.head.kernel = nnx.Param(jnp.asarray(head.kernel, dtype))
        module.head.bias = nnx.Param(jnp.asarray(head.bias, dtype))
        return module

    @property
    def params(self) -> LSTMParams:
        """The recurrent weights as a plain :class:`LSTMParams` pytree."""
        return LSTMParams(self.W[...], self.U[...], self.b[...])

    @property
    def model(self) -> Model:
        """The weights as the one model representation: one forward layer and the head."""
        layer = Layer(self.params, activation=self.activation, recurrent_activation=self.recurrent_activation)
        return Model((layer,), Head(self.head.kernel[...], self.head.bias[...], self.head_output))

    def states(self, xs: Array) -> LSTMState:
        """Hidden and cell states after 1..T inputs for ``xs`` (T, D); see :func:`unroll`."""
        return unroll(
            self.params, xs, activation=self.activation, recurrent_activation=self.recurrent_activation
        )

    def __call__(self, xs: Array) -> Array:
        """Head applied to ``h_T``: ``xs`` (T, D) -> (k,), or (N, T, D) -> (N, k)."""
        if xs.ndim == 3:
            return jax.vmap(self)(xs)
        return head_logits(self.model, xs)
