"""Flax NNX modules and Linen parameter trees as gradflow models: the same forward pass as Flax's own (outputs,
final carries, head), the same lag profiles as jacrev through Flax's cells, and errors that name the parameter."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gradflow.data.flax_modules import model_from_flax
from gradflow.flow.networks import model_profiles
from gradflow.lstm.model import Bidirectional, Layer, final_state, head_logits, hidden_states

T, D, H, K = 7, 3, 4, 2
RTOL, ATOL = 1e-5, 1e-6
CELLS = {"lstm": nnx.LSTMCell, "optimized": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell}
LINEN_CELLS = {"lstm": nn.LSTMCell, "optimized": nn.OptimizedLSTMCell, "gru": nn.GRUCell}


def _randomize(tree, seed, scale=0.6):
    """Every leaf replaced by N(0, scale^2) values of its dtype (Flax initialises biases to zero)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, jnp.shape(a), jnp.result_type(a))
                                        for k, a in zip(keys, leaves)])


def _random_module(module, seed):
    nnx.update(module, _randomize(nnx.state(module, nnx.Param), seed))
    return module


def _cell(kind, d, h, seed, dtype=jnp.float32, **kw):
    cell = CELLS[kind](d, h, rngs=nnx.Rngs(seed), param_dtype=dtype, dtype=dtype, **kw)
    return _random_module(cell, seed)


def _xs(seed, dtype=jnp.float32, t=T, d=D):
    return jax.random.normal(jax.random.key(100 + seed), (t, d), dtype)


def _h(carry):
    """h of a Flax carry: LSTM carries are (c, h), GRU carries h."""
    return carry[1] if isinstance(carry, tuple) else carry


def _run(rnn, inputs):
    """Flax's own pass of an RNN or Bidirectional over one sequence: (outputs (T, F) as Flax orders them, final h)."""
    with jax.numpy_dtype_promotion("standard"):
        carry, out = rnn(inputs[None], return_carry=True)
    final = jnp.concatenate([_h(c) for c in carry], -1) if isinstance(rnn, nnx.Bidirectional) else _h(carry)
    return out[0], final[0]


def _close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", list(CELLS))
def test_an_nnx_rnn_gives_flax_outputs_final_carry_and_head(kind):
    rnn = nnx.RNN(_cell(kind, D, H, 0))
    head = _random_module(nnx.Linear(H, K, rngs=nnx.Rngs(1)), 1)
    model = model_from_flax([rnn, head], head_output="sigmoid")
    layer = model.layers[0]
    assert (layer.cell, layer.direction, layer.activation, layer.recurrent_activation) == (
        "gru" if kind == "gru" else "lstm", "forward", "tanh", "sigmoid")
    assert model.head.output == "sigmoid" and layer.params.W.dtype == np.float32
    xs = _xs(0)
    out, final = _run(rnn, xs)
    _close(hidden_states(model, xs), out)
    _close(final_state(model, xs), final)
    _close(head_logits(model, xs), head(final))


def test_a_bare_cell_is_one_forward_layer_and_head_may_be_given_apart():
    cell = _cell("gru", D, H, 2, activation_fn=jax.nn.soft_sign, gate_fn=jax.nn.hard_sigmoid)
    head = _random_module(nnx.Linear(H, K, rngs=nnx.Rngs(3)), 3)
    model = model_from_flax(cell, head=head)
    assert (model.layers[0].activation, model.layers[0].recurrent_activation) == ("softsign", "hard_sigmoid")
    xs = _xs(2)
    out, final = _run(nnx.RNN(cell), xs)
    _close(hidden_states(model, xs), out)
    _close(head_logits(model, xs), head(final))


def test_biases_on_both_sides_of_an_lstm_cell_sum():
    cell = _cell("lstm", D, H, 22)
    cell.ii = _random_module(nnx.Linear(D, H, rngs=nnx.Rngs(23)), 23)  # an input dense with a bias
    xs = _xs(22)
    _close(hidden_states(model_from_flax(cell), xs), _run(nnx.RNN(cell), xs)[0])


def test_an_nnx_sequential_stack_with_a_linear_head_gives_flax_logits():
    lower, upper = nnx.RNN(_cell("lstm", D, H, 4)), nnx.RNN(_cell("gru", H, 5, 5))
    head = _random_module(nnx.Linear(5, K, rngs=nnx.Rngs(6)), 6)
    model = model_from_flax(nnx.Sequential(lower, upper, head))
    assert [layer.cell for layer in model.layers] == ["lstm", "gru"] and model.output_size == K
    xs = _xs(4)
    with jax.numpy_dtype_promotion("standard"):
        flax_logits = nnx.Sequential(lower, upper, head)(xs[None])[0]  # the head on every step; the last reads h_T
    out, final = _run(upper, _run(lower, xs)[0])
    _close(hidden_states(model, xs), out)
    _close(final_state(model, xs), final)
    _close(head_logits(model, xs), flax_logits[-1])


@pytest.mark.parametrize("keep_order", [False, True])
def test_a_reversed_rnn_is_a_backward_layer_and_keep_order_sets_what_the_level_above_reads(keep_order):
    lower = nnx.RNN(_cell("optimized", D, H, 7), reverse=True, keep_order=keep_order)
    upper = nnx.RNN(_cell("lstm", H, H, 8))
    alone, stack = model_from_flax(lower), model_from_flax([lower, upper])
    assert alone.layers[0].direction == "backward"
    # Without keep_order the upper RNN reads the lower's outputs last step first: it runs backward in time.
    assert [layer.direction for layer in stack.layers] == ["backward", "forward" if keep_order else "backward"]
    xs = _xs(7)
    out, final = _run(lower, xs)
    in_time = (lambda a: a) if keep_order else (lambda a: a[::-1])
    _close(hidden_states(alone, xs), in_time(out))
    _close(final_state(alone, xs), final)
    out, final = _run(upper, out)
    _close(hidden_states(stack, xs), in_time(out))
    _close(final_state(stack, xs), final)


def test_an_nnx_bidirectional_level_concatenates_forward_first():
    pair = nnx.Bidirectional(nnx.RNN(_cell("lstm", D, H, 9)), nnx.RNN(_cell("gru", D, H, 10)))
    middle = nnx.Bidirectional(nnx.RNN(_cell("gru", 2 * H, H, 12)), nnx.RNN(_cell("lstm", 2 * H, H, 13)))
    top = nnx.RNN(_cell("optimized", 2 * H, 3, 11))
    model = model_from_flax([pair, middle, top])
    assert isinstance(model.layers[0], Bidirectional) and model.layers[0].backward.cell == "gru"
    xs = _xs(9)
    out, final = _run(pair, xs)
    _close(hidden_states(model_from_flax(pair), xs), out)
    _close(final_state(model_from_flax(pair), xs), final)
    out, final = _run(top, _run(middle, out)[0])
    _close(hidden_states(model, xs), out)
    _close(final_state(model, xs), final)


def _linen_params(cell_cls, d, seed, dtype=jnp.float32, **kw):
    rnn = nn.RNN(cell_cls(H, param_dtype=dtype, dtype=dtype, **kw))
    with jax.numpy_dtype_promotion("standard"):
        variables = rnn.init(jax.random.key(seed), jnp.ones((1, T, d), dtype))
    return rnn, _randomize(variables, seed)


def _linen_run(module, variables, inputs, **kw):
    with jax.numpy_dtype_promotion("standard"):
        carry, out = module.apply(variables, inputs[None], return_carry=True, **kw)
    return out[0], _h(carry)[0]


@pytest.mark.parametrize("kind", list(LINEN_CELLS))
def test_a_linen_rnn_tree_gives_linen_apply(kind):
    rnn, variables = _linen_params(LINEN_CELLS[kind], D, 12)
    xs = _xs(12)
    out, final = _linen_run(rnn, variables, xs)
    for tree in (variables, variables["params"], variables["params"]["cell"]):
        model = model_from_flax(tree)
        assert model.layers[0].cell == ("gru" if kind == "gru" else "lstm")
        _close(hidden_states(model, xs), out)
        _close(final_state(model, xs), final)


def test_a_linen_tree_takes_its_activations_from_the_caller():
    rnn, variables = _linen_params(nn.GRUCell, D, 13, activation_fn=nn.relu, gate_fn=nn.hard_sigmoid)
    model = model_from_flax(variables, activation="relu", recurrent_activation="hard_sigmoid", cell="gru")
    xs = _xs(13)
    out, _ = _linen_run(rnn, variables, xs)
    _close(hidden_states(model, xs), out)


def test_a_reversed_linen_rnn_needs_its_direction_given():
    rnn, variables = _linen_params(nn.OptimizedLSTMCell, D, 21)
    xs = _xs(21)
    out, final = _linen_run(rnn, variables, xs, reverse=True)  # outputs last step first (keep_order=False)
    model = model_from_flax(variables, directions=["backward"])
    assert model.layers[0].direction == "backward"
    _close(hidden_states(model, xs), out[::-1])
    _close(final_state(model, xs), final)
    with pytest.raises(ValueError, match=r"directions\[0\]='bidirectional'; level 0 is a Layer: expected one of "):
        model_from_flax(variables, directions=["bidirectional"])
    with pytest.raises(ValueError, match=r"directions must give one entry per level"):
        model_from_flax(variables, directions=["forward", "forward"])


class _Compact(nn.Module):
    """Cells named by class (LSTMCell_0, GRUCell_0): only the widths tell the order."""

    @nn.compact
    def __call__(self, x):
        x = nn.RNN(nn.LSTMCell(3))(x)
        x = nn.RNN(nn.GRUCell(5))(x)
        return nn.Dense(K)(x[:, -1])


@pytest.mark.slow
def test_linen_stacks_are_ordered_by_name_numbers_or_chained_widths_and_read_their_dense_head():
    xs = _xs(14)
    sequential = nn.Sequential([nn.RNN(nn.GRUCell(5)), nn.RNN(nn.LSTMCell(H)), nn.RNN(nn.LSTMCell(H)), nn.Dense(K)])
    for module in (sequential, _Compact()):
        with jax.numpy_dtype_promotion("standard"):
            variables = _randomize(module.init(jax.random.key(14), xs[None]), 14)
            logits = module.apply(variables, xs[None])[0]
        model = model_from_flax(variables)
        _close(head_logits(model, xs), logits[-1] if module is sequential else logits)
    assert [layer.hidden_size for layer in model_from_flax(variables).layers] == [3, 5]


def test_a_linen_bidirectional_tree_is_a_pair():
    module = nn.Bidirectional(nn.RNN(nn.LSTMCell(H)), nn.RNN(nn.GRUCell(H)))
    xs = _xs(15)
    with jax.numpy_dtype_promotion("standard"):
        variables = _randomize(module.init(jax.random.key(15), xs[None]), 15)
        carry, out = module.apply(variables, xs[None], return_carry=True)
    model = model_from_flax(variables)
    assert [layer.cell for layer in (model.layers[0].forward, model.layers[0].backward)] == ["lstm", "gru"]
    _close(hidden_states(model, xs), out[0])
    _close(final_state(model, xs), jnp.concatenate([carry[0][1][0], carry[1][0]]))


def _unroll(cell, inputs):
    """Flax's own cell stepped from the zero carry: the carries (c, h) or h at t = 0..T."""
    zeros = jnp.zeros(cell.hidden_features, inputs.dtype)
    carries = [zeros if isinstance(cell, nnx.GRUCell) else (zeros, zeros)]
    for x in inputs:
        carries.append(cell(carries[-1], x)[0])
    return carries


def _lag_reference(cell, inputs, lags):
    """log10 ||dh_T / dh_{T-k}||_F through Flax's own cell, c held fixed, from the zero carry."""
    n = len(inputs)

    def h_T(h, c, k):
        carry = h if c is None else (c, h)
        for x in inputs[n - k:]:
            carry = cell(carry, x)[0]
        return _h(carry)

    @jax.jit
    def norms():
        carries = _unroll(cell, inputs)
        c = (lambda k: None) if isinstance(cell, nnx.GRUCell) else (lambda k: carries[n - k][0])
        return jnp.stack([jnp.log10(jnp.linalg.norm(jax.jacrev(h_T)(_h(carries[n - k]), c(k), k))) for k in lags])

    return np.asarray(norms())


@pytest.mark.slow
def test_float64_lag_profiles_and_input_sensitivity_equal_jacrev_through_flax_cells():
    f64 = jnp.float64
    lower, upper = _cell("lstm", D, H, 16, f64), _cell("gru", H, 3, 17, f64)
    model = model_from_flax([nnx.RNN(lower), nnx.RNN(upper)])
    assert model.layers[0].params.W.dtype == np.float64
    xs = _xs(16, f64, t=9)
    profile = model_profiles(model, xs)
    lags = [1, 2, 5, 9]
    below = jnp.stack([_h(carry) for carry in _unroll(lower, xs)[1:]])
    for layer, (cell, inputs) in zip(profile.layers, [(lower, xs), (upper, below)]):
        np.testing.assert_allclose(layer.log10_norm_h[np.array(lags) - 1], _lag_reference(cell, inputs, lags),
                                   rtol=0, atol=1e-9)

    def top_final(inputs):
        return _h(_unroll(upper, jnp.stack([_h(carry) for carry in _unroll(lower, inputs)[1:]]))[-1])

    jac = jax.jit(jax.jacrev(top_final))(xs)  # (H_top, T, D)
    by_time = np.log10(np.sqrt((np.asarray(jac) ** 2).sum(axis=(0, 2))))
    np.testing.assert_allclose(profile.input_sensitivity, by_time[::-1], rtol=0, atol=1e-9)


def test_a_backward_layer_profile_is_jacrev_on_its_reversed_time_axis():
    rnn = nnx.RNN(_cell("optimized", D, H, 18, jnp.float64), reverse=True)
    xs = _xs(18, jnp.float64, t=6)
    profile = model_profiles(model_from_flax(rnn), xs)
    assert profile.input_sensitivity is None and profile.layers[0].direction == "backward"
    np.testing.assert_allclose(profile.layers[0].log10_norm_h, _lag_reference(rnn.cell, xs[::-1], range(1, 7)),
                               rtol=0, atol=1e-9)


def _linen_lstm_tree():
    return _linen_params(nn.LSTMCell, D, 19)[1]


def test_errors_name_the_function_the_merge_the_subtree_and_the_shape():
    with pytest.raises(ValueError, match=r"activation_fn: gelu is not a supported cell activation; supported: jnp.tanh"):
        model_from_flax(nnx.LSTMCell(D, H, activation_fn=jax.nn.gelu, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"gate_fn: silu is not a supported gate function"):
        model_from_flax(nnx.RNN(nnx.GRUCell(D, H, gate_fn=jax.nn.silu, rngs=nnx.Rngs(0))))
    rnn = nnx.RNN(nnx.LSTMCell(D, H, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"Bidirectional.merge_fn must concatenate"):
        model_from_flax(nnx.Bidirectional(rnn, rnn, merge_fn=lambda a, b: a + b))
    tree = _linen_lstm_tree()
    tree["params"]["Foo_0"] = {"scale": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"params/Foo_0: unknown subtree \['scale'\]"):
        model_from_flax(tree)
    tree = _linen_lstm_tree()
    tree["params"]["cell"]["hf"]["kernel"] = jnp.ones((H, H + 1))
    with pytest.raises(ValueError, match=r"params/cell/hf.kernel must have shape \(H, 4\) = \(4, 4\); got \(4, 5\)"):
        model_from_flax(tree)
    tree = _linen_lstm_tree()
    tree["params"]["cell"]["ig"]["kernel"] = tree["params"]["cell"]["ig"]["kernel"].astype(jnp.float64)
    with pytest.raises(ValueError, match=r"params/cell/ig holds float64 parameters beside float32 ones"):
        model_from_flax(tree)
    tree = _linen_lstm_tree()
    tree["params"]["cell"]["ii"]["kernel"] = tree["params"]["cell"]["ii"]["kernel"].at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match=r"params/cell/ii.kernel holds 1 non-finite values"):
        model_from_flax(tree)


def test_errors_for_what_gradflow_cannot_read_unambiguously():
    rnn = nnx.RNN(nnx.LSTMCell(D, H, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"head.kernel must have shape \(F, k\) with F = 4"):
        model_from_flax(rnn, head=nnx.Linear(H + 1, 1, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"is a LSTM cell but cell='gru'"):
        model_from_flax(rnn, cell="gru")
    with pytest.raises(ValueError, match=r"activation / recurrent_activation / directions are for Linen trees"):
        model_from_flax(rnn, activation="relu")
    with pytest.raises(ValueError, match=r"level 1 takes 3 input features but level 0 gives 4"):
        model_from_flax([rnn, rnn])
    flipped = nnx.RNN(nnx.LSTMCell(D, D, rngs=nnx.Rngs(0)), reverse=True)
    with pytest.raises(ValueError, match=r"\[1\]: a Bidirectional above an RNN\(reverse=True, keep_order=False\)"):
        model_from_flax([flipped, nnx.Bidirectional(rnn, rnn)])
    with pytest.raises(TypeError, match=r"SimpleCell; supported cells"):
        model_from_flax(nnx.RNN(nnx.SimpleCell(D, H, rngs=nnx.Rngs(0))))
    square = _linen_params(nn.LSTMCell, H, 20)[1]["params"]
    with pytest.raises(ValueError, match=r"cannot tell the order of the levels \['a', 'b'\] .* 2 orders chain"):
        model_from_flax({"a": square, "b": square})
    other = _linen_params(nn.LSTMCell, H, 24)[1]["params"]
    stack = model_from_flax({"x_10": other, "x_2": square})  # by the number, not the text
    np.testing.assert_array_equal(stack.layers[1].params.U[:, :H], other["cell"]["hi"]["kernel"])
    wide = nnx.RNN(nnx.GRUCell(D, H + 1, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"Bidirectional: the backward layer has hidden size 5 and input size 3"):
        model_from_flax(nnx.Bidirectional(nnx.RNN(nnx.GRUCell(D, H, rngs=nnx.Rngs(0))), wide))
    assert isinstance(model_from_flax([square, square]).layers[1], Layer)
