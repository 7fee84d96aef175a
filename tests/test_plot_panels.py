"""Every one-Axes plotting function is a panel: it draws on the Axes it is given (and only there), returns it, never
saves or closes; without one it makes a one-column figure. Colour bars say their unit, titles name only the
reductions performed, and print-size text is at least 7 pt.

Results, monitor datasets and model profiles are built by hand: nothing is computed here.
"""

import matplotlib.figure
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pytest
import xarray as xr

from gradflow.flow.networks import LayerProfile, ModelProfile
from gradflow.plot.lyapunov import plot_finite_time_exponents
from gradflow.plot.model import plot_model_profile
from gradflow.plot.monitor import (
    horizon_figure,
    plot_decay_rate,
    plot_horizon,
    plot_profile_evolution,
    plot_profile_image,
    profile_evolution_figure,
)
from gradflow.plot.profiles import (
    lag_profiles_figure,
    plot_decay_map,
    plot_horizon_map,
    plot_lag_profiles,
    plot_lyapunov,
    plot_setting_map,
    saturation_figure,
)
from gradflow.plot.style import CATEGORICAL, COLUMN_WIDTH
from gradflow.sweep.results import Results

T = 8
FB = [-1.0, 0.0, 1.0, 2.0]
WS = [0.5, 1.0, 2.0]


def _results(coords: dict, *, horizon=None, lags=T, decades=2.0) -> Results:
    """Profiles ``-slope * lag`` wrt h and state, horizons given or 1..T, leading exponents and their errors."""
    dims = tuple(coords)
    shape = tuple(len(v) for v in coords.values())
    lag = np.arange(1, lags + 1)
    slopes = np.linspace(0.1, 1.0, int(np.prod(shape))).reshape(shape + (1,))
    data = {}
    for k, w in enumerate(("h", "state")):
        data[f"log10_norm_{w}"] = -(slopes + k) * lag
        data[f"stderr_log10_norm_{w}"] = np.full(shape + (lags,), 0.05)
        data[f"horizon_{w}"] = (np.arange(np.prod(shape)).reshape(shape) % lags + 1.0) if horizon is None else horizon
        data[f"decay_rate_{w}"] = -(slopes[..., 0] + k)
    for k, gate in enumerate(("input", "forget")):
        data[f"saturation_{gate}"] = np.linspace(0.0, 0.5, int(np.prod(shape))).reshape(shape) * (k + 1)
    data["lyapunov"] = np.stack([-slopes[..., 0], -2 * slopes[..., 0]], axis=-1)
    data["stderr_lyapunov"] = np.full(shape + (2,), 0.01)
    all_coords = {name: np.asarray(values) for name, values in coords.items()} | {"lag": lag}
    return Results(dims, all_coords, data, {"config": {"analysis": {"decades": decades}}})


def _monitor(n_layers: int = 2, steps=(0, 10, 20, 30)) -> xr.Dataset:
    S, lag = len(steps), np.arange(1, T + 1)
    profiles = -np.linspace(0.1, 0.5, S * n_layers).reshape(S, n_layers, 1) * lag
    horizon = np.full((S, n_layers), 4.0)
    horizon[-1, 0] = np.inf
    layer = ("layer", np.arange(n_layers))
    return xr.Dataset(
        {"log10_norm_h": (("step", "layer", "lag"), profiles), "horizon": (("step", "layer"), horizon),
         "decay_rate": (("step", "layer"), profiles[..., -1] / T)},
        coords={"step": np.asarray(steps), "lag": lag, "layer_index": layer,
                "layer_direction": ("layer", np.array(["forward"] * n_layers)),
                "layer_cell": ("layer", np.array(["lstm"] * n_layers)),
                "layer_hidden_size": ("layer", np.full(n_layers, 4))},
        attrs={"decades": 1.0, "every_unit": "step", "probe_shape": [2, T, 1]},
    )


def _model_profile() -> ModelProfile:
    layers = tuple(LayerProfile(i, "forward", "lstm", 4, -(0.2 + i) * np.arange(1, T + 1)) for i in range(2))
    return ModelProfile(layers, -0.1 * np.arange(T), "h")


SWEEP = _results({"forget_bias": FB, "weight_scale": WS, "seed": [0, 1, 2]})
PANELS = {
    "lag_profiles": lambda ax: plot_lag_profiles(SWEEP, wrt="state", panel=1, ax=ax),
    "horizon_map": lambda ax: plot_horizon_map(SWEEP, wrt="h", ax=ax),
    "decay_map": lambda ax: plot_decay_map(SWEEP, wrt="state", ax=ax),
    "saturation_map": lambda ax: plot_setting_map(SWEEP, "saturation_forget", ax=ax),
    "lyapunov": lambda ax: plot_lyapunov(SWEEP, ax=ax),
    "finite_time_exponents": lambda ax: plot_finite_time_exponents(np.linspace(-1, 0, 12).reshape(6, 2), 5, ax=ax),
    "model_profile": lambda ax: plot_model_profile(_model_profile(), ax=ax),
    "profile_image": lambda ax: plot_profile_image(_monitor(), layer=1, ax=ax),
    "profile_evolution": lambda ax: plot_profile_evolution(_monitor(), layer=1, ax=ax),
    "monitor_horizon": lambda ax: plot_horizon(_monitor(), ax=ax),
    "decay_rate": lambda ax: plot_decay_rate(_monitor(), ax=ax),
}


@pytest.fixture
def no_saving(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a one-Axes function saved its figure")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", refuse)


def _untouched(ax) -> bool:
    return not (ax.lines or ax.collections or ax.patches or ax.images or ax.texts or ax.get_legend()
                or ax.get_title() or ax.get_xlabel() or ax.get_ylabel())


@pytest.mark.parametrize("name", PANELS)
def test_draws_on_the_given_axes_only_and_neither_saves_nor_closes(name, no_saving):
    fig, axes = plt.subplots(2, 2)
    try:
        target = axes[1, 0]
        drawn = PANELS[name](target)
        assert drawn is target
        assert not _untouched(target) and target.get_xlabel() and target.get_ylabel()
        assert all(_untouched(ax) for ax in axes.flat if ax is not target)
        assert plt.fignum_exists(fig.number)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", PANELS)
def test_without_an_axes_makes_a_one_column_figure_in_print_sized_type(name, no_saving):
    before = set(plt.get_fignums())
    ax = PANELS[name](None)
    fig = ax.figure
    try:
        assert fig.number not in before and ax in fig.axes
        assert fig.get_figwidth() == pytest.approx(COLUMN_WIDTH)
        fig.canvas.draw()
        small = [(t.get_text(), t.get_fontsize()) for t in fig.findobj(matplotlib.text.Text)
                 if t.get_text().strip() and t.get_visible() and t.get_fontsize() < 7]
        assert small == []
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", PANELS)
def test_a_new_figure_is_drawn_in_the_house_style_a_given_axes_in_the_callers(name, no_saving):
    with plt.rc_context({"font.size": 20.0}):
        own = PANELS[name](None)
        fig, given = plt.subplots()
        PANELS[name](given)
        assert {t.get_fontsize() for t in given.get_xticklabels()} == {20.0}
        assert given.xaxis.label.get_fontsize() == 20.0
    try:  # the house style holds after the call too (ticks are made lazily, after the function returned)
        assert {t.get_fontsize() for t in own.get_xticklabels()} == {9.0}
        assert own.xaxis.label.get_fontsize() == 9.0
    finally:
        plt.close(own.figure)
        plt.close(fig)


def _visible_ticks(bar) -> list[float]:
    bar.ax.figure.canvas.draw()
    low, high = bar.norm.vmin, bar.norm.vmax
    return [float(v) for v in bar.ax.yaxis.get_majorticklocs() if low <= v <= high]


def _colour_bar(ax):
    (mesh,) = [c for c in ax.collections if c.colorbar is not None]
    return mesh.colorbar


def test_the_horizon_colour_bar_has_ticks_at_decades_and_a_unit():
    # horizons over three decades: ticks at 1, 10, 100 (before: one tick, and no unit)
    horizon = np.array([[1.0, 3.0, 20.0], [50.0, 150.0, 400.0], [np.inf, 2.0, 7.0], [9.0, 90.0, np.nan]])
    ax = plot_horizon_map(_results({"forget_bias": FB, "weight_scale": WS}, horizon=horizon, lags=500))
    try:
        bar = _colour_bar(ax)
        assert _visible_ticks(bar) == [1.0, 10.0, 100.0]
        assert "(steps)" in bar.ax.get_ylabel() and "$10^{-2}$" in bar.ax.get_ylabel()
        labels = [t.get_text() for t in bar.ax.get_yticklabels() if 1 <= t.get_position()[1] <= 400]
        assert labels == ["1", "10", "100"]
    finally:
        plt.close(ax.figure)


def test_a_narrow_log_horizon_range_still_has_several_ticks():
    horizon = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [6.0, 5.0, 1.0], [2.0, 2.0, 2.0]])  # 1..6: < 1 decade
    ax = plot_horizon_map(_results({"forget_bias": FB, "weight_scale": WS}, horizon=horizon))
    try:
        ticks = _visible_ticks(_colour_bar(ax))
        assert ticks == [1.0, 2.0, 5.0]
        assert "(steps)" in _colour_bar(ax).ax.get_ylabel()
    finally:
        plt.close(ax.figure)


def test_a_linear_horizon_colour_bar_and_the_one_setting_line_say_steps():
    horizon = np.array([[5.0, 6.0, 7.0]] * 4)  # within a factor 5: a linear colour scale
    ax = plot_horizon_map(_results({"forget_bias": FB, "weight_scale": WS}, horizon=horizon))
    line = plot_horizon_map(_results({"weight_scale": [0.1, 1.0, 10.0, 100.0]}, horizon=np.array([1.0, 4, 9, 30])))
    try:
        bar = _colour_bar(ax)
        assert bar.ax.get_yscale() == "linear" and "(steps)" in bar.ax.get_ylabel()
        assert "(steps)" in line.get_ylabel() and line.get_yscale() == "log" and line.get_xscale() == "log"
    finally:
        plt.close(ax.figure)
        plt.close(line.figure)


def _titles(results: Results) -> list[str]:
    axes = [plot_lag_profiles(results), plot_horizon_map(results), plot_lyapunov(results)]
    fig = lag_profiles_figure(results)
    titles = [ax.get_title() for ax in axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
    for f in [ax.figure for ax in axes] + [fig]:
        plt.close(f)
    return titles


def test_titles_never_name_a_reduction_over_a_setting_of_one_value():
    # one seed, one weight scale: nothing was reduced, so no title names a median, a seed or the weight scale
    titles = _titles(_results({"forget_bias": FB, "hidden": [4], "weight_scale": [1.0], "seed": [7]}))
    for title in titles:
        assert "median" not in title and "seed" not in title and "over" not in title, title
        assert "weight scale" not in title and "hidden" not in title, title


def test_titles_name_the_median_over_seeds_and_a_fixed_setting_when_longer_than_one():
    titles = _titles(_results({"forget_bias": FB, "weight_scale": WS, "hidden": [4, 8], "seed": [0, 1, 2]}))
    for title in titles:
        assert "median over 3 seeds" in title, title
        assert "hidden = 4, first of 2" in title, title
    assert "median over 1 seeds" not in " ".join(_titles(_results({"forget_bias": FB, "seed": [0]})))


def test_lag_profile_figure_shares_one_colour_bar_named_for_the_setting():
    fig = lag_profiles_figure(SWEEP)
    try:
        panels, bars = fig.axes[:6], fig.axes[6:]
        assert len(bars) == 1 and bars[0].get_ylabel() == "forget-gate bias $b_f$"
        assert all(ax.get_legend() is None for ax in panels)
        assert [t.get_text() for t in bars[0].get_yticklabels()] == ["\N{MINUS SIGN}1", "0", "1", "2"]
    finally:
        plt.close(fig)


def test_lag_profile_panel_checks_its_arguments():
    with pytest.raises(ValueError, match="panel=3: weight_scale has 3 values"):
        plot_lag_profiles(SWEEP, panel=3)
    with pytest.raises(ValueError, match="wrt='c'"):
        plot_lag_profiles(SWEEP, wrt="c")
    plt.close("all")


def test_categorical_curves_use_the_categorical_palette():
    ax = plot_lyapunov(SWEEP)
    model = plot_model_profile(_model_profile())
    monitor = plot_horizon(_monitor(3))
    try:
        assert [bars.lines[0].get_color() for bars in ax.containers] == list(CATEGORICAL[:len(WS)])
        for axes, n in ((model, 2), (monitor, 3)):
            colours = [line.get_color() for line in axes.lines if "beyond" not in line.get_label()]
            assert colours[:n] == list(CATEGORICAL[:n]), colours
            assert axes.get_legend() is not None
    finally:
        for a in (ax, model, monitor):
            plt.close(a.figure)


def test_profile_evolution_is_coloured_by_training_step():
    fig = profile_evolution_figure(_monitor())
    try:
        bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert [ax.get_ylabel() for ax in bars[1::2]] == ["training step"] * 2
        lines = fig.axes[1].lines
        assert len({tuple(line.get_color()) for line in lines}) == len(lines) == 4
    finally:
        plt.close(fig)
    fig = horizon_figure(_monitor())
    try:
        assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    finally:
        plt.close(fig)


def _mesh(ax):
    (mesh,) = [c for c in ax.collections if hasattr(c, "get_array") and c.get_array() is not None]
    return mesh


def test_the_decay_map_draws_the_stored_rates_median_over_seeds_centred_at_zero():
    ax = plot_decay_map(SWEEP, wrt="h")
    try:
        mesh = _mesh(ax)
        expected = np.median(SWEEP.data["decay_rate_h"], axis=-1)  # (forget_bias, weight_scale)
        np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(len(WS), len(FB)), expected.T)
        assert mesh.norm.vmin == -mesh.norm.vmax == pytest.approx(-np.abs(expected).max())
        assert mesh.colorbar.ax.get_ylabel() == "decay rate (decades per step)"
        assert "median over 3 seeds" in ax.get_title()
    finally:
        plt.close(ax.figure)


def test_saturation_panels_share_one_colour_bar_on_the_unit_interval():
    fig = saturation_figure(SWEEP)
    try:
        panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
        assert [ax.get_title().split("\n")[0] for ax in panels] == ["input gate saturated", "forget gate saturated"]
        for ax, gate in zip(panels, ("input", "forget")):
            mesh = _mesh(ax)
            assert (mesh.norm.vmin, mesh.norm.vmax) == (0.0, 1.0)
            expected = np.median(SWEEP.data[f"saturation_{gate}"], axis=-1).T
            np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(expected.shape), expected)
        bars = [ax for ax in fig.axes if ax.get_ylabel() == "fraction saturated (steps x units)"]
        assert len(bars) == 1
    finally:
        plt.close(fig)


def test_a_setting_map_names_what_it_cannot_draw():
    before = plt.get_fignums()
    with pytest.raises(ValueError, match="name='horizon_h'"):
        plot_setting_map(SWEEP, "horizon_h")
    with pytest.raises(ValueError, match="holds no such variable"):
        plot_setting_map(SWEEP, "decay_rate_x")
    assert plt.get_fignums() == before, "a refused call left a figure open"
