"""Lyapunov spectra against known exponents: Henon, Engelken-Wolf-Abbott rate networks, linear maps, LSTM lag slopes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradflow.flow.engine import lag_norms
from gradflow.flow.lyapunov import finite_time_exponents, lstm_lyapunov_spectrum, lyapunov_spectrum
from gradflow.lstm.init import init_lstm

A_H, B_H = 1.4, 0.3


def henon(s, x):
    return jnp.stack([1.0 - A_H * s[0] ** 2 + s[1], B_H * s[0]])


def test_henon_exponents_and_exact_sum():
    xs = jnp.zeros((20000, 1))
    lam = np.asarray(lyapunov_spectrum(henon, jnp.zeros(2), xs, transient=500))
    # Published values 0.41922, -1.62319 (Sprott); finite-T error ~ 1/sqrt(T) ~ 1e-2 at most.
    np.testing.assert_allclose(lam, [0.4193, -1.6233], atol=1e-2)
    assert lam[0] > lam[1]
    # det J = -b exactly at every step: the sum is ln 0.3 to rounding.
    assert abs(lam.sum() - math.log(B_H)) < 1e-9


def test_reortho_every_and_remainder_match():
    xs = jnp.zeros((1003, 1))  # 1003 = 4 * 250 + 3: exercises the leftover block
    one = lyapunov_spectrum(henon, jnp.zeros(2), xs, reortho_every=1)
    four = lyapunov_spectrum(henon, jnp.zeros(2), xs, reortho_every=4)
    np.testing.assert_allclose(four, one, rtol=0, atol=1e-11)


def test_linear_map_gives_log_moduli():
    rng = np.random.default_rng(1)
    eig = np.array([1.05, -0.8, 0.5, 0.2])
    P = np.eye(4) + 0.3 * rng.standard_normal((4, 4))
    A = jnp.asarray(P @ np.diag(eig) @ np.linalg.inv(P))
    lam = lyapunov_spectrum(lambda s, x: s @ A, jnp.ones(4), jnp.zeros((1000, 1)))
    # Error O(log cond(P) / T): the alignment transient of a fixed linear map.
    np.testing.assert_allclose(lam, np.log(np.abs(eig)), atol=1e-2)
    lam2 = lyapunov_spectrum(lambda s, x: s @ A, jnp.ones(4), jnp.zeros((1000, 1)), k=2)
    np.testing.assert_allclose(lam2, lam[:2], atol=1e-12)  # leading k are the same whatever k


def _rate_network(N, g, dt, seed):
    J = np.random.default_rng(seed).standard_normal((N, N)) * g / math.sqrt(N)
    np.fill_diagonal(J, 0.0)
    J = jnp.asarray(J)
    return lambda h, x: h + dt * (-h + J @ jnp.tanh(h))


def test_engelken_mean_exponent():
    N, g, dt, T, T0 = 30, 3.0, 0.1, 3000, 300
    step = _rate_network(N, g, dt, 0)
    h0 = jnp.asarray(np.random.default_rng(1).standard_normal(N))
    xs = jnp.zeros((T, 1))
    lam = np.asarray(lyapunov_spectrum(step, h0, xs, transient=T0))
    assert np.all(np.diff(lam) <= 1e-12)  # descending (N = 30 sits near the edge of chaos at g = 3)
    # Exact: mean exponent = time average of log|det J_t| / N over the counted steps (independent slogdet).
    hs = jax.lax.scan(lambda h, x: (step(h, x), h), h0, xs)[1]  # hs[t] = state entering step t
    jac = jax.vmap(lambda h: jax.jacfwd(step)(h, xs[0]))(hs[T0:])
    logdet = jnp.linalg.slogdet(jac)[1]
    assert abs(lam.mean() - float(logdet.mean()) / N) < 1e-9
    # SCIENCE.md identity 5: mean exponent per unit time = log(1 - dt)/dt. Exact only to O(dt^2 g^2 / N):
    # log det((1-dt) I + dt J D) = N log(1-dt) + tr log(I + eps J D), eps = dt/(1-dt); tr(JD) = 0 (zero diagonal)
    # but tr((JD)^2)/N ~ g^2/N with random sign, so the per-time deviation is ~ eps^2 g^2 / (2 N dt) ~ 0.02.
    target = math.log(1 - dt) / dt
    assert abs(lam.mean() / dt - target) < 0.03, (lam.mean() / dt, target)
    # ...and not a tautology: the full spectrum's mean differs from the continuous-time value -1 by more.
    assert abs(target - (-1.0)) > 0.05


def test_finite_time_windows_average_to_spectrum():
    xs = jnp.zeros((1200, 1))
    full = lyapunov_spectrum(henon, jnp.zeros(2), xs)
    per = finite_time_exponents(henon, jnp.zeros(2), xs, window=100, reortho_every=2)
    assert per.shape == (12, 2)
    np.testing.assert_allclose(per.mean(axis=0), full, atol=1e-11)
    run = finite_time_exponents(henon, jnp.zeros(2), xs, window=100, running=True)
    np.testing.assert_allclose(run[-1], full, atol=1e-11)
    np.testing.assert_allclose(run[0], per[0], atol=1e-11)
    with pytest.raises(ValueError, match="window"):
        finite_time_exponents(henon, jnp.zeros(2), xs, window=5, reortho_every=2)


@pytest.fixture(scope="module")
def contracting_lstm():
    p = init_lstm(jax.random.key(3), 2, 4, weight_scale=0.8, forget_bias=1.0, dtype=jnp.float64)
    xs = jnp.asarray(np.random.default_rng(2).standard_normal((1500, 2)))
    return p, xs


@pytest.mark.parametrize("wrt", ["state", "h"])
def test_lstm_largest_exponent_is_lag_profile_slope(contracting_lstm, wrt):
    p, xs = contracting_lstm
    lam = lstm_lyapunov_spectrum(p, xs)
    assert lam.shape == (8,)
    assert lam[0] < 0  # contracting
    prof = np.asarray(lag_norms(p, xs, wrt=wrt))  # by lag
    lags = np.arange(1, prof.size + 1)
    sel = slice(100, 1400)
    slope = np.polyfit(lags[sel], prof[sel], 1)[0] * math.log(10)
    # Backward products over the last lags vs forward over all steps: same rate, finite-T error ~ 1e-2.
    assert abs(float(lam[0]) - slope) < 0.02 * max(1.0, abs(slope)), (float(lam[0]), slope)
    # Leading 4 (spread ~0.4 per step, e^2 over 5 steps): the same to rounding. The trailing ones
    # (spread ~4 per step, e^20 over 5 steps) lose ~1e-16 e^20 ~ 1e-7 as columns collapse between QRs.
    every = lstm_lyapunov_spectrum(p, xs, k=4, reortho_every=5)
    np.testing.assert_allclose(every, lam[:4], rtol=0, atol=1e-10)


def test_bad_arguments():
    s0, xs = jnp.zeros(2), jnp.zeros((10, 1))
    with pytest.raises(ValueError, match="k="):
        lyapunov_spectrum(henon, s0, xs, k=3)
    with pytest.raises(ValueError, match="k="):
        lyapunov_spectrum(henon, s0, xs, k=0)
    with pytest.raises(ValueError, match="reortho_every"):
        lyapunov_spectrum(henon, s0, xs, reortho_every=0)
    with pytest.raises(ValueError, match="s0"):
        lyapunov_spectrum(henon, jnp.zeros((2, 1)), xs)
    with pytest.raises(ValueError, match="transient"):
        lyapunov_spectrum(henon, s0, xs, transient=10)
    p = init_lstm(jax.random.key(0), 2, 3, dtype=jnp.float64)
    with pytest.raises(ValueError, match="wrt"):
        lstm_lyapunov_spectrum(p, jnp.zeros((5, 2)), wrt="h")


def test_plot_finite_time_exponents(tmp_path):
    from gradflow.plot.lyapunov import plot_finite_time_exponents, save_finite_time_exponents

    per = np.asarray(finite_time_exponents(henon, jnp.zeros(2), jnp.zeros((400, 1)), window=50))
    ax = plot_finite_time_exponents(per, 50)
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) == 8]
    np.testing.assert_allclose(lines[0].get_ydata()[-1], per[:, 0].mean())  # running mean ends at the spectrum
    paths = save_finite_time_exponents(per, 50, tmp_path / "fte")
    assert all(p.stat().st_size > 0 for p in paths)
    with pytest.raises(ValueError, match="exponents"):
        plot_finite_time_exponents(per[0], 50)
