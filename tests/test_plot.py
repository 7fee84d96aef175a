"""Figures from stored results: files, embedded TrueType fonts, deterministic bytes, and what is drawn.

Results are built by hand (no sweep, no compile); the figures are inspected by capturing them where
gradflow.plot.profiles closes them.
"""

import warnings

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pytest

from gradflow.plot.profiles import plot_all, plot_horizon_map
from gradflow.plot.style import save_figure
from gradflow.sweep.results import Results

T = 6
LAGS = np.arange(1, T + 1)
ATTRS = {"config": {"analysis": {"decades": 2.0}}}


def _results(coords: dict, *, wrt=("h",), horizon=None, attrs=ATTRS) -> Results:
    """Profiles ``-slope * lag`` with a distinct slope per variant; horizons given or 1..T."""
    dims = tuple(coords)
    shape = tuple(len(v) for v in coords.values())
    slopes = np.linspace(0.1, 1.0, int(np.prod(shape))).reshape(shape + (1,))
    data = {}
    for k, w in enumerate(wrt):
        data[f"log10_norm_{w}"] = -(slopes + k) * LAGS
        data[f"horizon_{w}"] = (np.arange(np.prod(shape)).reshape(shape) % T + 1.0) if horizon is None else horizon
        data[f"decay_rate_{w}"] = -slopes[..., 0]
    all_coords = {name: np.asarray(values) for name, values in coords.items()}
    all_coords["lag"] = LAGS
    return Results(dims, all_coords, data, attrs)


FB = [-1.0, 0.0, 1.0]
WS = [0.25, 1.0, 4.0, 16.0]


@pytest.fixture
def drawn(monkeypatch):
    """The figures gradflow.plot.profiles draws, in order, kept open for inspection (not rendered: the file tests render)."""
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", figures.append)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *args, **kwargs: None)
    yield figures
    for fig in figures:
        close(fig)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One results set (a categorical dim, seeds, both wrt, inf and NaN) drawn twice into two directories."""
    horizon = np.arange(12.0).reshape(2, 3, 2) % T + 1
    horizon[0, 0] = np.inf  # never below the threshold in either seed
    horizon[1, 2, 0] = np.nan  # exploded in one seed
    horizon[1, 0, 1] = np.inf
    coords = {"activation": ["tanh", "relu"], "forget_bias": FB, "seed": [0, 1]}
    results = _results(coords, wrt=("h", "state"), horizon=horizon)
    results.data["log10_norm_h"][1, 2, 1] = np.nan
    results.data["log10_norm_h"][0, 1, 0, 4:] = -np.inf
    root = tmp_path_factory.mktemp("figures")
    return root, plot_all(results, root / "a"), plot_all(results, root / "b")


def test_plot_all_writes_a_pdf_and_a_png_per_figure(rendered):
    root, paths, _ = rendered
    names = [p.name for p in paths]
    stems = ("lag_profiles", "horizon_h", "decay_h", "horizon_state", "decay_state")
    assert names == [f"{stem}.{ext}" for stem in stems for ext in ("pdf", "png")]
    assert paths == [root / "a" / name for name in names]
    assert sorted(p.name for p in (root / "a").iterdir()) == sorted(names)
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 5000, p
        assert data.startswith(b"%PDF-" if p.suffix == ".pdf" else b"\x89PNG\r\n\x1a\n"), p


def test_pdfs_embed_truetype_fonts_and_no_timestamps(rendered):
    for p in rendered[1]:
        data = p.read_bytes()
        if p.suffix == ".pdf":
            assert b"/FontFile2" in data, f"{p.name}: no embedded TrueType font"
            assert b"/Type3" not in data and b"/FontFile3" not in data, f"{p.name}: Type 3 or CFF fonts"
            assert b"/CreationDate" not in data and b"/ModDate" not in data
        else:
            assert b"tIME" not in data and b"Software" not in data


def test_output_is_byte_for_byte_deterministic(rendered):
    _, first, second = rendered
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_lag_profiles_draw_the_stored_curves_per_panel(tmp_path, drawn):
    results = _results({"forget_bias": FB, "weight_scale": WS})
    plot_all(results, tmp_path)
    profiles, horizon_map, _decay_map = drawn
    panels = profiles.axes[:-1]  # the last axes is the colour bar
    # up to three panels across the second dim: weight scales at indices 0, 2, 3 (linspace(0, 3, 3) rounded)
    assert [ax.get_title() for ax in panels] == [f"weight scale (gain) = {v:g}" for v in (0.25, 4.0, 16.0)]
    for ax, p in zip(panels, (0, 2, 3)):
        assert len(ax.lines) == len(FB)
        for k, line in enumerate(ax.lines):
            np.testing.assert_array_equal(line.get_xdata(), LAGS)
            np.testing.assert_array_equal(line.get_ydata(), results.data["log10_norm_h"][k, p])
    assert panels[0].get_xlabel() == "lag $T - t$ (steps)"
    assert profiles._suptitle is None  # nothing was reduced
    # the horizon map: forget bias across, weight scale (four values over two decades) up on a log axis
    ax = horizon_map.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "log")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("forget-gate bias $b_f$", "weight scale (gain)")
    np.testing.assert_array_equal(ax.collections[0].get_array(), results.data["horizon_h"].T)


def test_seeds_are_reduced_by_their_median(tmp_path, drawn):
    horizon = np.array([[2.0, 4.0, 9.0], [np.nan, 3.0, 5.0], [np.inf, np.inf, 1.0]])
    results = _results({"forget_bias": FB, "seed": [0, 1, 2]}, horizon=horizon)
    results.data["log10_norm_h"][1, 0] = np.nan  # one seed of one variant exploded
    plot_all(results, tmp_path)
    profiles, horizon_map, _decay_map = drawn
    assert profiles._suptitle.get_text() == "Lag profiles (median over 3 seeds)"
    curves = [line.get_ydata() for line in profiles.axes[0].lines]
    p = results.data["log10_norm_h"]
    want = [np.median(p[0], axis=0), (p[1, 1] + p[1, 2]) / 2, np.median(p[2], axis=0)]
    for got, w in zip(curves, want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-15)
    line, never = horizon_map.axes[0].lines  # one swept dim left: a line, not a map
    np.testing.assert_array_equal(line.get_xdata(), FB)
    np.testing.assert_array_equal(line.get_ydata(), [4.0, 4.0, np.nan])  # median inf is off the line...
    np.testing.assert_array_equal(never.get_xdata(), FB[2:])  # ...and marked at T
    np.testing.assert_array_equal(never.get_ydata(), [results.coords["lag"][-1]])


def test_categorical_dims_are_labelled_by_name(tmp_path, drawn):
    results = _results({"activation": ["tanh", "relu", "linear"], "forget_bias": FB})
    plot_all(results, tmp_path)
    profiles, horizon_map, _decay_map = drawn
    # categories get a categorical palette and a legend (no colour bar: the figure has one Axes, one panel)
    assert len(profiles.axes) == len(FB)  # three panels across forget bias, no colour-bar Axes
    (legend,) = profiles.legends  # one legend shared by the panels
    assert [t.get_text() for t in legend.get_texts()] == ["tanh", "relu", "linear"]
    assert legend.get_title().get_text() == "cell activation"
    for panel in profiles.axes:
        assert len({line.get_color() for line in panel.lines}) == 3
        assert len({line.get_linestyle() for line in panel.lines}) == 3  # apart in grey-scale too
    ax = horizon_map.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tanh", "relu", "linear"]
    np.testing.assert_array_equal(ax.get_xticks(), [0, 1, 2])
    np.testing.assert_array_equal(ax.collections[0].get_array(), results.data["horizon_h"].T)


def test_single_dim_results_plot_a_line(tmp_path, drawn):
    results = _results({"weight_scale": WS}, horizon=np.array([1.0, 3.0, np.inf, 6.0]))
    plot_all(results, tmp_path)
    profiles, horizon_map, _decay_map = drawn
    (panel, _) = profiles.axes
    assert len(panel.lines) == len(WS)
    line, never = horizon_map.axes[0].lines
    np.testing.assert_array_equal(line.get_xdata(), WS)
    np.testing.assert_array_equal(line.get_ydata(), [1.0, 3.0, np.nan, 6.0])
    np.testing.assert_array_equal(never.get_xdata(), [WS[2]])
    assert horizon_map.axes[0].get_yscale() == "log"


def test_inf_and_nan_horizons_are_drawn_as_their_own_colours(tmp_path, drawn):
    horizon = np.array([[np.inf, 2.0, 3.0, 4.0], [np.nan, 4.0, 1.0, 5.0], [3.0, np.nan, 6.0, np.inf]])
    results = _results({"forget_bias": FB, "weight_scale": WS}, horizon=horizon)
    results.data["log10_norm_h"][1, 0] = np.nan
    results.data["log10_norm_h"][0, 0, 3:] = np.inf
    plot_all(results, tmp_path)
    ax = drawn[1].axes[0]
    mesh = ax.collections[0]
    image = mesh.get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(image), np.isnan(horizon).T)  # NaN: the "bad" colour
    assert (mesh.norm.vmin, mesh.norm.vmax) == (1.0, 6.0)
    assert np.all(image[np.isposinf(horizon).T] > mesh.norm.vmax)  # inf: the "over" colour
    finite = np.isfinite(horizon).T
    np.testing.assert_array_equal(image[finite], horizon.T[finite])
    cmap = mesh.get_cmap()
    assert not np.allclose(cmap.get_over(), cmap.get_bad()) and not np.allclose(cmap.get_over(), cmap(1.0))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"not within T = {T}", "non-finite profile"]


@pytest.mark.parametrize(
    ("coords", "horizon"),
    [
        ({"forget_bias": FB, "weight_scale": [1.0, 2.0]}, np.full((3, 2), np.inf)),
        ({"forget_bias": FB, "weight_scale": [1.0, 2.0]}, np.full((3, 2), np.nan)),
        ({"forget_bias": FB, "weight_scale": [1.0, 2.0]}, np.full((3, 2), 3.0)),
        ({"forget_bias": FB}, np.array([np.inf, np.nan, np.inf])),
    ],
    ids=["all-inf", "all-nan", "constant", "1d-no-finite"],
)
def test_degenerate_horizon_maps_render(tmp_path, coords, horizon):
    paths = save_figure(plot_horizon_map(_results(coords, horizon=horizon)).figure, tmp_path / "horizon_h")
    assert [p.name for p in paths] == ["horizon_h.pdf", "horizon_h.png"]
    assert all(p.stat().st_size > 5000 for p in paths)


def test_results_without_config_attrs_plot(tmp_path):
    ax = plot_horizon_map(_results({"forget_bias": FB, "weight_scale": WS}, attrs={}))
    paths = save_figure(ax.figure, tmp_path / "horizon_h")
    assert all(p.stat().st_size > 0 for p in paths)


def test_seq_len_sweep_with_seeds_plots_without_warnings(tmp_path):
    results = _results({"seq_len": [4, 6], "seed": [0, 1]})
    results.data["log10_norm_h"][0, :, 4:] = np.nan  # as run_sweep pads the shorter sequence
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_all(results, tmp_path)


def test_a_run_without_swept_settings_draws_its_single_profile(tmp_path):
    from gradflow.config import parse_config
    from gradflow.profiles.job import sweep_results

    results = sweep_results(parse_config("[model]\ninput_size = 2\nhidden_size = 3\n[data]\nseq_len = 8\n"))
    assert results.dims == ()
    paths = plot_all(results, tmp_path)
    assert sorted(p.name for p in paths) == ["lag_profiles.pdf", "lag_profiles.png"]
