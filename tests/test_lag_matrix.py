"""The lag matrix: its last row is lag_norms, interior rows match jacrev in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import loop_states, random_params

from gradflow.flow.engine import lag_norms
from gradflow.flow.lag_matrix import MAX_ROWS, lag_matrix
from gradflow.lstm.cell import LSTMState, lstm_step


@pytest.mark.parametrize("norm", ["frobenius", "spectral"])
@pytest.mark.parametrize("wrt", ["h", "state"])
def test_last_row_is_lag_norms_reversed(rng, wrt, norm):
    params = random_params(rng, 2, 4, scale=1.2)
    xs = jnp.asarray(rng.normal(size=(30, 2)))
    origins, m = lag_matrix(params, xs, stride=7, wrt=wrt, norm=norm)
    assert origins.tolist() == [2, 9, 16, 23, 30]
    # The same loop in another compiled program: equal to float64 rounding, not bit for bit.
    np.testing.assert_allclose(m[-1], lag_norms(params, xs, wrt=wrt, norm=norm)[::-1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm", ["frobenius", "spectral"])
@pytest.mark.parametrize("wrt", ["h", "state"])
def test_interior_rows_match_jacrev_in_float64(rng, wrt, norm):
    H, T = 3, 10
    params = random_params(rng, 2, H, scale=1.5)
    xs = jnp.asarray(rng.normal(size=(T, 2)))
    origins, m = lag_matrix(params, xs, stride=3, wrt=wrt, norm=norm)
    states = loop_states(params, xs)
    order = "fro" if norm == "frobenius" else 2
    for i, t in enumerate(origins.tolist()):
        for s in range(T):
            if s >= t:
                assert np.isnan(m[i, s])
                continue

            def h_t(v, s=s, t=t):
                st = LSTMState(v[:H], v[H:]) if wrt == "state" else LSTMState(v, states[s].c)
                for x in xs[s:t]:
                    st = lstm_step(params, st, x)
                return jnp.concatenate([st.h, st.c]) if wrt == "state" else st.h

            v = jnp.concatenate([states[s].h, states[s].c]) if wrt == "state" else states[s].h
            want = np.log10(np.linalg.norm(np.asarray(jax.jacrev(h_t)(v)), order))
            np.testing.assert_allclose(m[i, s], want, rtol=0, atol=1e-12)


def test_arguments_are_validated(rng):
    params = random_params(rng, 2, 3)
    xs = jnp.ones((MAX_ROWS + 1, 2))
    with pytest.raises(ValueError, match="stride=1 gives 257 rows"):
        lag_matrix(params, xs)
    with pytest.raises(ValueError, match="stride=0"):
        lag_matrix(params, xs[:4], stride=0)
    with pytest.raises(ValueError, match="wrt='c'"):
        lag_matrix(params, xs[:4], wrt="c")
    with pytest.raises(ValueError, match="norm='max'"):
        lag_matrix(params, xs[:4], norm="max")
    origins, m = lag_matrix(params, xs[:4], stride=1)
    assert origins.tolist() == [1, 2, 3, 4] and m.shape == (4, 4)
