"""The collapse map, its onset table and the loss curves, on hand-built stores (no training): the hatching, the
onset lines and the table come from one definition; titles name only the reductions performed."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from gradflow.collapse.table import collapse_regions, collapse_table, map_edges, table_markdown
from gradflow.plot.collapse import (
    ACCURACY_LABEL,
    GROUPS,
    LOSS_RATIO_LABEL,
    onset_staircase,
    plot_collapse_all,
    plot_collapse_map,
    plot_loss_curves,
)
from gradflow.plot.style import CATEGORICAL, cell_edges, is_log_axis
from gradflow.sweep.results import Results

WS = np.array([0.25, 0.5, 1.0, 2.0, 4.0, 8.0])  # the map's x axis: log-spaced
T = np.array([10, 20, 50, 100, 200])  # its y axis: log-spaced
#: Collapsed fraction per (T, weight scale) over 2 seeds. Rows: none; onset at a half-collapsed cell; collapses,
#: recovers, collapses again; collapsed from the first cell, recovers, again; one clean switch.
FRACTION = np.array([
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0.5, 1],
    [0, 0, 1, 0, 1, 1],
    [1, 0, 0, 1, 1, 1],
    [0, 1, 1, 1, 1, 1],
])
HATCHED = FRACTION >= 0.5
#: Per row of T, the index of the x edge where collapse first begins (0: before the range; None: never).
ONSET_EDGE = [None, 4, 2, 0, 1]
STEPS = 20


def _store(learning_rates=(0.01,), *, regression=False) -> Results:
    dims = ("seq_len", "weight_scale", "seed", "learning_rate")
    n_lr = len(learning_rates)
    seeds = np.stack([FRACTION >= 0.5, FRACTION >= 1], axis=-1)  # (T, WS, seed): seed means give FRACTION
    collapsed = np.repeat(seeds[..., None], n_lr, axis=-1)
    learned = ~collapsed
    learned[:, :2] = False  # small weight scales fail to learn: failure grows towards small values
    accuracy = np.where(collapsed, 0.5, 0.95) + 0.0
    loss = np.where(learned[..., None], np.geomspace(0.7, 1e-3, STEPS), 0.69)
    loss = np.where(collapsed[..., None], 0.7, loss)
    data = {
        "collapsed": collapsed, "learned": learned,
        "final_val_accuracy": np.full(collapsed.shape, np.nan) if regression else accuracy,
        "loss_ratio": np.where(learned, 0.2, 1.0),
        "initial_log10_norm_at_lag": -np.log2(WS)[None, :, None, None] * T[:, None, None, None] / 10
                                     + np.zeros(collapsed.shape),
        "train_loss": loss,
    }
    coords = {"seq_len": T, "weight_scale": WS, "seed": np.array([0, 1]),
              "learning_rate": np.array(learning_rates), "step": np.arange(1, STEPS + 1)}
    attrs = {"config": {"analysis": {"map": ["weight_scale", "seq_len"]}}}
    return Results(dims, coords, data, attrs, var_dims={"train_loss": dims + ("step",)})


@pytest.fixture
def drawn():
    figures = []
    yield figures
    for fig in figures:
        plt.close(fig)


def _map(results, drawn, **kwargs):
    ax = plot_collapse_map(results, **kwargs)
    drawn.append(ax.figure)
    return ax


def _hatched_cells(ax, ex, ey) -> np.ndarray:
    cells = np.zeros((ex.size - 1, ey.size - 1), bool)
    for patch in ax.patches:
        i = np.flatnonzero(np.isclose(ex[:-1], patch.get_x()))
        j = np.flatnonzero(np.isclose(ey[:-1], patch.get_y()))
        assert i.size == 1 and j.size == 1, "a hatched patch that is not a map cell"
        assert np.isclose(patch.get_width(), ex[i[0] + 1] - ex[i[0]]) and np.isclose(patch.get_height(),
                                                                                        ey[j[0] + 1] - ey[j[0]])
        assert patch.get_hatch() == "////"
        cells[i[0], j[0]] = True
    return cells


def _line_onsets(ax, gid, ey) -> dict[int, float]:
    """Row index -> x of the line's vertical segment spanning exactly that row's cell."""
    (line,) = [line for line in ax.lines if line.get_gid() == gid]
    xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    found = {}
    for a in range(xs.size - 1):
        if np.isnan(xs[a]) or np.isnan(xs[a + 1]) or xs[a] != xs[a + 1] or ys[a] == ys[a + 1]:
            continue  # a break, or a step between rows (of length 0 where both rows have one onset)
        low, high = sorted((ys[a], ys[a + 1]))
        (j,) = np.flatnonzero(np.isclose(ey[:-1], low))
        assert np.isclose(ey[j + 1], high), "a vertical segment that does not span one row's cell"
        assert j not in found
        found[int(j)] = xs[a]
    return found


def test_the_edges_are_the_figures_cell_edges():
    for values in (WS, T, np.array([-1.0, 0.0, 2.0]), np.array([3.0]), np.array([0.1, 100.0])):
        edges, log = map_edges(values)
        np.testing.assert_allclose(edges, cell_edges(values))
        assert log == is_log_axis(values)
    np.testing.assert_array_equal(map_edges(np.array(["a", "b"]))[0], [-0.5, 0.5, 1.5])


def test_hatching_onset_line_and_table_come_from_one_definition(drawn):
    results = _store()
    regions = collapse_regions(results)
    ex, ey = regions.edges
    np.testing.assert_array_equal(regions.collapsed, HATCHED.T)  # (x, y) = (weight_scale, seq_len)
    ax = _map(results, drawn)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    np.testing.assert_array_equal(_hatched_cells(ax, ex, ey), HATCHED.T)  # a cell at exactly half is hatched

    line = _line_onsets(ax, "collapse-onset", ey)
    expected = {j: ex[k] for j, k in enumerate(ONSET_EDGE) if k is not None}
    assert line.keys() == expected.keys()
    for j, x in line.items():
        k = int(np.flatnonzero(ex == x)[0])  # exactly on a cell edge
        assert x == expected[j]
        assert HATCHED[j, k] and (k == 0 or not HATCHED[j, k - 1])  # between unhatched (or the map's edge) and hatched
        assert HATCHED[j, k:].any() and not HATCHED[j, :k].any()  # the first switch of the row

    table = json.loads(json.dumps(collapse_table(results)))
    entry = table["onsets"]["weight_scale"]
    assert entry["per"] == "seq_len" and entry["values"] == T.tolist() and entry["direction"] == "at larger values"
    for j, onset in enumerate(entry["onset"]):
        if onset is None:
            assert j not in line
        else:
            assert (ex[0] if onset == "-inf" else onset) == line[j]  # the table's onsets are the line's
    assert entry["onset"][3] == "-inf"
    assert entry["recovers"] == [False, False, True, True, False]
    assert entry["intervals"][2] == [[ex[2], ex[3]], [ex[4], ex[6]]]

    # learning failure (at most half learned) grows the other way: the dashed line walks right to left
    failure = regions.failure_onsets["weight_scale"]
    assert failure.direction == -1
    _check_line(ax, "failure-onset", regions.failed.T, failure.onset, -1, ex, ey)
    _check_line(ax, "collapse-onset", regions.collapsed.T, regions.onsets["weight_scale"].onset, 1, ex, ey)


def _check_line(ax, gid, region, onsets, direction, ex, ey):
    """The line's segment in each row is at that row's onset, on the edge where walking ``direction`` the row
    first enters ``region`` (rows: y, columns: x)."""
    line = _line_onsets(ax, gid, ey)
    assert line.keys() == {j for j, v in enumerate(onsets) if not np.isnan(v)}
    for j, x in line.items():
        assert x == (ex[0] if onsets[j] == -np.inf else ex[-1] if onsets[j] == np.inf else onsets[j])
        k = int(np.flatnonzero(ex == x)[0])
        before, after = (region[j, :k], region[j, k:]) if direction > 0 else (region[j, k:], region[j, :k][::-1])
        assert not before.any() and after[0]


def test_the_onset_along_the_other_axis_follows_the_same_cells():
    results = _store()
    regions = collapse_regions(results)
    along_t = regions.onsets["seq_len"]
    ey = regions.edges[1]
    assert along_t.direction == 1 and along_t.per == "weight_scale"
    for i, value in enumerate(along_t.onset):  # column i of the map, walked up in T
        column = HATCHED[:, i]
        first = np.flatnonzero(column)
        if not first.size:
            assert np.isnan(value)
        elif first[0] == 0:
            assert value == -np.inf
        else:
            assert value == ey[first[0]] and not column[first[0] - 1]


def test_the_table_marks_rows_that_recover():
    markdown = table_markdown(collapse_table(_store()))
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "onset" not in line]
    by_t = {int(r.split("|")[1]): r for r in rows[:5]}
    assert "(then recovers)" in by_t[50] and "(then recovers)" in by_t[100]
    assert "(then recovers)" not in by_t[20] and "(then recovers)" not in by_t[200]
    assert "before the range" in by_t[100] and "none" in by_t[10] and "nowhere" in by_t[10]
    assert "at least half of its variants" in markdown


def test_onset_staircase_breaks_at_rows_without_onset():
    xs, ys = onset_staircase(np.array([np.nan, 1.5, np.inf, np.nan]), np.array([0.0, 1, 2]), np.arange(5.0))
    np.testing.assert_array_equal(xs, [1.5, 1.5, 2.0, 2.0])
    np.testing.assert_array_equal(ys, [1.0, 2.0, 2.0, 3.0])
    assert onset_staircase(np.array([np.nan]), np.array([0.0, 1]), np.array([0.0, 1]))[0].size == 0


@pytest.mark.parametrize(("learning_rates", "title"), [
    ((0.01,), "Collapse map\n(mean over 2 seeds; learning rate = 0.01)"),
    ((0.01, 0.1), "Collapse map\n(mean over 2 seeds and 2 values of learning rate)"),
])
def test_the_title_names_only_reductions_performed(drawn, learning_rates, title):
    results = _store(learning_rates)
    ax = _map(results, drawn)
    assert ax.get_title() == title
    assert collapse_regions(results).variants_per_cell == 2 * len(learning_rates)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == f"collapsed (at least {len(learning_rates)} of a cell's {2 * len(learning_rates)} variants)"


def test_the_map_draws_on_a_given_axes_with_a_labelled_colour_bar(drawn):
    fig, axes = plt.subplots(1, 2)
    drawn.append(fig)
    before = plt.get_fignums()
    assert plot_collapse_map(_store(), ax=axes[1]) is axes[1]
    assert plt.get_fignums() == before  # no figure of its own
    (bar,) = [a for a in fig.axes if a not in axes]
    assert bar.get_ylabel() == ACCURACY_LABEL
    ax = _map(_store(regression=True), drawn)
    assert [a.get_ylabel() for a in ax.figure.axes if a is not ax] == [LOSS_RATIO_LABEL]


def test_a_map_of_one_axis_hatches_the_same_cells(drawn):
    base = _store()
    keep = (slice(None), 2, slice(None), slice(None))  # weight scale 1.0 only: T is the one swept axis
    results = Results(("seq_len", "seed", "learning_rate"),
                      {**base.coords, "weight_scale": WS[2:3]},
                      {k: v[keep] for k, v in base.data.items()}, {"config": {}},
                      var_dims={"train_loss": ("seq_len", "seed", "learning_rate", "step")})
    ax = _map(results, drawn)
    edges = collapse_regions(results).edges[0]
    spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in ax.patches)
    assert spans == [(edges[j], edges[j + 1]) for j in np.flatnonzero(HATCHED[:, 2])]


def test_loss_curves_are_categorical_and_labelled_at_their_ends(drawn):
    results = _store()
    ax = plot_loss_curves(results)
    drawn.append(ax.figure)
    lines = {line.get_gid(): line for line in ax.lines}
    assert list(lines) == list(GROUPS)
    assert [lines[g].get_color() for g in GROUPS] == list(CATEGORICAL[:3])
    assert len({str(lines[g].get_linestyle()) for g in GROUPS}) == 3  # apart in grey-scale too
    assert ax.get_legend() is None  # three lines: labelled directly
    collapsed = int(results.data["collapsed"].sum())
    learned = int((results.data["learned"] & ~results.data["collapsed"]).sum())
    labels = {t.get_text(): t for t in ax.texts}
    assert set(labels) == {f"learned ({learned})", f"collapsed ({collapsed})",
                           f"not learned ({results.data['collapsed'].size - learned - collapsed})"}
    heights = sorted(t.xyann[1] for t in ax.texts)
    assert np.all(np.diff(heights) >= 0.08 - 1e-12)  # labels apart although two lines end at nearly one value
    assert all(t.get_fontsize() >= 7 for t in ax.texts)
    assert ax.get_ylabel() == "minibatch training loss (nats)" and ax.get_yscale() == "log"


def test_plot_collapse_all_writes_the_files_from_one_definition(tmp_path):
    results = _store()
    before = plt.get_fignums()
    paths = plot_collapse_all(results, tmp_path)
    assert sorted(p.name for p in paths) == sorted(
        ["collapse_map.pdf", "collapse_map.png", "loss_curves.pdf", "loss_curves.png", "collapse_table.md",
         "collapse_table.json"])
    assert all(p.stat().st_size > 0 for p in paths)
    table = json.loads((tmp_path / "collapse_table.json").read_text())
    assert table == json.loads(json.dumps(collapse_table(results)))
    assert plt.get_fignums() == before  # its figures are closed
