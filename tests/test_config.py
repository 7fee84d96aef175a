"""Config parsing: the embedded default, ranges, validation messages, specs and dims, resolved() and its hash."""

import json
import re

import numpy as np
import pytest

from gradflow.config.profiles import DEFAULT_CONFIG, SHAPE_AXES, Config, ConfigError, load_config, parse_config
from gradflow.flow.memory import MAX_AUTO_CHUNK, chunk_bytes
from gradflow.sweep.store import config_hash
from gradflow.flow.variants import ModelSpec

#: The smallest valid config, as TOML lines per table; tests add, replace or (with None) drop keys.
MINIMAL = {"model": {"input_size": "2", "hidden_size": "3"}, "data": {"seq_len": "8"}}


def _toml(**tables) -> str:
    """TOML text of :data:`MINIMAL` updated by ``tables`` (table -> {key: TOML literal or None})."""
    merged = {name: dict(keys) for name, keys in MINIMAL.items()}
    for name, keys in tables.items():
        merged.setdefault(name, {}).update(keys)
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None) + "\n"
        for name, keys in merged.items()
    )


def _emit(resolved: dict) -> str:
    """TOML text of a resolved() dict (lists of numbers and strings print the same in JSON and TOML)."""
    return "".join(
        f"[{table}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()) + "\n"
        for table, keys in resolved.items()
    )


def test_default_config_is_what_its_text_says():
    cfg = parse_config(DEFAULT_CONFIG)
    assert isinstance(cfg, Config) and cfg.source == DEFAULT_CONFIG
    assert cfg.input_size == 8
    assert cfg.shape_axes == {
        "hidden_size": (32,), "activation": ("tanh",), "recurrent_activation": ("sigmoid",), "seq_len": (200,)
    }
    assert tuple(cfg.shape_axes) == SHAPE_AXES
    assert cfg.grid.names == ("forget_bias", "weight_scale", "seed") and cfg.grid.shape == (25, 13, 3)
    assert list(cfg.grid.axes["forget_bias"]) == [-3.0 + 0.25 * k for k in range(25)]
    ws = np.array(cfg.grid.axes["weight_scale"])
    np.testing.assert_allclose(ws, 0.25 * 2.0 ** (np.arange(13) / 3), rtol=1e-14)  # 0.25 .. 4, 2^(1/3) apart
    assert (ws[0], ws[-1]) == (0.25, 4.0)
    assert cfg.grid.axes["seed"] == (0, 1, 2)
    settings = (cfg.input_seed, cfg.wrt, cfg.decades, cfg.dtype, cfg.chunk_size)
    assert settings == (0, ("h", "state"), 10.0, "float32", "auto") and cfg.memory_budget_mb == 1024.0
    assert cfg.work_chunk_size() == MAX_AUTO_CHUNK == cfg.resolved()["analysis"]["chunk_size"]
    assert cfg.specs() == [
        (
            {"hidden_size": 32, "activation": "tanh", "recurrent_activation": "sigmoid", "seq_len": 200},
            ModelSpec(8, 32, 200),
        )
    ]
    assert list(cfg.dims) == ["forget_bias", "weight_scale", "seed"]
    assert load_config().resolved() == cfg.resolved()


@pytest.mark.parametrize(
    ("literal", "want"),
    [
        ("{start = -1.0, stop = 1.0, num = 5}", [-1.0, -0.5, 0.0, 0.5, 1.0]),
        ("{start = 1, stop = 3, num = 3}", [1.0, 2.0, 3.0]),
        ("{start = 2.5, stop = 7.0, num = 1}", [2.5]),
        ("{start = 0.5, stop = -0.5, num = 3}", [0.5, 0.0, -0.5]),
        ("{start = 0.01, stop = 100.0, num = 5, log = true}", [0.01, 0.1, 1.0, 10.0, 100.0]),
        ("{start = 4.0, stop = 1.0, num = 3, log = true}", [4.0, 2.0, 1.0]),
        ("{start = 1.0, stop = 4.0, num = 3, log = false}", [1.0, 2.5, 4.0]),
        ("[0.3, -2.0, 7]", [0.3, -2.0, 7]),
        ("1.5", [1.5]),
    ],
)
def test_ranges_lists_and_scalars_resolve_to_values(literal, want):
    values = parse_config(_toml(grid={"weight_scale": literal})).grid.axes["weight_scale"]
    np.testing.assert_allclose(values, want, rtol=1e-14, atol=0)
    assert (values[0], values[-1]) == (want[0], want[-1])  # end points are exact


def test_scalar_and_one_element_list_are_the_same_setting():
    scalar = parse_config(_toml(model={"hidden_size": "3", "activation": '"relu"'}, grid={"seed": "4"}))
    listed = parse_config(_toml(model={"hidden_size": "[3]", "activation": '["relu"]'}, grid={"seed": "[4]"}))
    assert scalar.shape_axes == listed.shape_axes and scalar.shape_axes["hidden_size"] == (3,)
    assert scalar.grid.axes == listed.grid.axes == {"seed": (4,)}
    # a one-valued shape setting is no dimension; a grid axis given in the config always is
    assert scalar.dims == listed.dims == {"seed": (4,)}
    assert config_hash(scalar) == config_hash(listed)


def test_specs_are_in_c_order_and_dims_list_swept_shapes_then_grid_axes():
    cfg = parse_config(_toml(
        model={"hidden_size": "[3, 4]", "activation": '["tanh", "relu"]', "recurrent_activation": '"hard_sigmoid"'},
        data={"seq_len": "[8, 12]"},
        grid={"seed": "[0, 1]", "forget_bias": "[2.0, -1.0, 0.0]"},
    ))
    settings = [
        (3, "tanh", 8), (3, "tanh", 12), (3, "relu", 8), (3, "relu", 12),
        (4, "tanh", 8), (4, "tanh", 12), (4, "relu", 8), (4, "relu", 12),
    ]
    specs = cfg.specs()
    assert [(s["hidden_size"], s["activation"], s["seq_len"]) for s, _ in specs] == settings
    assert [spec for _, spec in specs] == [
        ModelSpec(2, h, t, activation=a, recurrent_activation="hard_sigmoid") for h, a, t in settings
    ]
    assert all(s["recurrent_activation"] == "hard_sigmoid" for s, _ in specs)
    assert cfg.dims == {
        "hidden_size": (3, 4), "activation": ("tanh", "relu"), "seq_len": (8, 12),
        "forget_bias": (2.0, -1.0, 0.0), "seed": (0, 1),
    }
    # grid axes come in the schema's order (forget_bias, weight_scale, scheme, seed), not the file's
    assert list(cfg.dims) == ["hidden_size", "activation", "seq_len", "forget_bias", "seed"]


def test_analysis_and_data_settings():
    cfg = parse_config(_toml(
        data={"seq_len": "8", "input_seed": "7"},
        analysis={"wrt": '"state"', "decades": "3", "dtype": '"float64"', "chunk_size": "5"},
    ))
    assert (cfg.input_seed, cfg.wrt, cfg.decades, cfg.dtype, cfg.chunk_size) == (7, ("state",), 3.0, "float64", 5)
    assert isinstance(cfg.decades, float)
    minimal = parse_config(_toml())
    assert (minimal.input_seed, minimal.wrt, minimal.decades, minimal.dtype, minimal.chunk_size) == (
        0, ("h", "state"), 10.0, "float32", "auto"
    )
    assert minimal.grid.axes == {} and minimal.dims == {}


BAD = [
    # tables and keys
    (
        {"training": {"lr": "0.1"}},
        r"unknown table\(s\) \['training'\]; allowed tables are \['model', 'grid', 'data', 'analysis'\]",
    ),
    (
        {"model": {"hiden_size": "3"}},
        r"\[model\]: unknown key\(s\) \['hiden_size'\]; "
        r"allowed keys are \['activation', 'hidden_size', 'input_size', 'recurrent_activation'\]",
    ),
    (
        {"grid": {"learning_rate": "[0.1]"}},
        r"\[grid\]: unknown key\(s\) \['learning_rate'\]; "
        r"allowed keys are \['forget_bias', 'scheme', 'seed', 'weight_scale'\]",
    ),
    (
        {"analysis": {"method": '"exact"'}},
        r"\[analysis\]: unknown key\(s\) \['method'\]; allowed keys are \['chunk_size', 'decades', 'dtype', 'memory_budget_mb', 'wrt'\]",
    ),
    ({"model": {"hidden_size": None}}, r"\[model\]\.hidden_size is required"),
    ({"model": {"input_size": None}}, r"\[model\]\.input_size is required"),
    ({"data": {"seq_len": None}}, r"\[data\]\.seq_len is required"),
    # types and values
    ({"model": {"hidden_size": '"32"'}}, r"\[model\]\.hidden_size must hold integers >= 1; got '32'"),
    ({"model": {"hidden_size": "true"}}, r"\[model\]\.hidden_size must hold integers >= 1; got True"),
    ({"model": {"hidden_size": "[3, 0]"}}, r"\[model\]\.hidden_size must hold integers >= 1; got 0"),
    ({"data": {"seq_len": "8.0"}}, r"\[data\]\.seq_len must hold integers >= 1; got 8\.0"),
    ({"model": {"input_size": '"2"'}}, r"\[model\]\.input_size must be a positive integer; got '2'"),
    ({"model": {"input_size": "[2, 3]"}}, r"\[model\]\.input_size must be a positive integer; got \[2, 3\]"),
    ({"model": {"input_size": "false"}}, r"\[model\]\.input_size must be a positive integer; got False"),
    ({"data": {"input_seed": "-1"}}, r"\[data\]\.input_seed must hold integers in \[0, 4294967295\]; got -1"),
    ({"grid": {"forget_bias": "[]"}}, r"\[grid\]\.forget_bias is an empty list; give at least one value"),
    ({"model": {"activation": "[]"}}, r"\[model\]\.activation is an empty list"),
    ({"grid": {"forget_bias": "[0.0, nan]"}}, r"\[grid\]\.forget_bias must hold finite numbers; got \[0\.0, nan\]"),
    ({"grid": {"weight_scale": '["big"]'}}, r"\[grid\]\.weight_scale must hold finite numbers"),
    ({"grid": {"weight_scale": "[1.0, true]"}}, r"\[grid\]\.weight_scale must hold finite numbers"),
    ({"grid": {"seed": "[0, -1]"}}, r"\[grid\]\.seed must hold integers in \[0, 4294967295\]; got -1"),
    ({"grid": {"seed": "[0.5]"}}, r"\[grid\]\.seed must hold integers in \[0, 4294967295\]; got 0\.5"),
    # ranges
    (
        {"grid": {"forget_bias": "{start = 0.0, stop = 1.0}"}},
        r"\[grid\]\.forget_bias: a range takes start, stop, num \(and optional log\); missing \['num'\]",
    ),
    (
        {"grid": {"forget_bias": "{start = 0.0, stop = 1.0, num = 3, step = 1}"}},
        r"\[grid\]\.forget_bias: a range .*unknown \['step'\]",
    ),
    (
        {"grid": {"forget_bias": "{start = 0.0, stop = 1.0, num = 0}"}},
        r"\[grid\]\.forget_bias\.num must be a positive integer; got 0",
    ),
    (
        {"grid": {"forget_bias": "{start = 0.0, stop = 1.0, num = 2.5}"}},
        r"\[grid\]\.forget_bias\.num must be a positive integer; got 2\.5",
    ),
    (
        {"grid": {"forget_bias": '{start = "a", stop = 1.0, num = 3}'}},
        r"\[grid\]\.forget_bias\.start must be a number; got 'a'",
    ),
    (
        {"grid": {"forget_bias": "{start = 0.0, stop = true, num = 3}"}},
        r"\[grid\]\.forget_bias\.stop must be a number; got True",
    ),
    (
        {"grid": {"weight_scale": "{start = 0.0, stop = 4.0, num = 3, log = true}"}},
        r"\[grid\]\.weight_scale: a log range needs start > 0 and stop > 0; got 0\.0, 4\.0",
    ),
    (
        {"grid": {"weight_scale": "{start = 1.0, stop = -4.0, num = 3, log = true}"}},
        r"\[grid\]\.weight_scale: a log range needs start > 0 and stop > 0; got 1\.0, -4\.0",
    ),
    # names
    (
        {"model": {"activation": '"gelu"'}},
        r"\[model\]\.activation: 'gelu' is not one of \['linear', 'relu', 'softsign', 'tanh'\]",
    ),
    (
        {"model": {"recurrent_activation": '["sigmoid", "tanh"]'}},
        r"\[model\]\.recurrent_activation: 'tanh' is not one of \['hard_sigmoid', 'sigmoid'\]",
    ),
    (
        {"grid": {"scheme": '["orthogonal", "xavier"]'}},
        r"\[grid\]\.scheme: 'xavier' is not one of \['glorot_uniform', 'normal', 'orthogonal'\]",
    ),
    ({"analysis": {"wrt": '["h", "c"]'}}, r"\[analysis\]\.wrt: 'c' is not one of \['h', 'state'\]"),
    ({"analysis": {"wrt": '["h", "state", "h"]'}}, r"\[analysis\]\.wrt repeats a value: \['h', 'state', 'h'\]"),
    ({"analysis": {"wrt": "[]"}}, r"\[analysis\]\.wrt is an empty list"),
    ({"analysis": {"dtype": '"float16"'}}, r"\[analysis\]\.dtype: 'float16' is not one of \['float32', 'float64'\]"),
    ({"analysis": {"chunk_size": "0"}}, r'\[analysis\]\.chunk_size must be a positive integer or "auto"; got 0'),
    ({"analysis": {"chunk_size": "-4"}}, r'\[analysis\]\.chunk_size must be a positive integer or "auto"; got -4'),
    ({"analysis": {"chunk_size": "[8, 16]"}}, r'\[analysis\]\.chunk_size must be a positive integer or "auto"; got \[8, 16\]'),
    ({"analysis": {"decades": "0"}}, r"\[analysis\]\.decades must be a positive number; got 0"),
    ({"analysis": {"decades": "-2.0"}}, r"\[analysis\]\.decades must be a positive number; got -2\.0"),
    ({"analysis": {"decades": "nan"}}, r"\[analysis\]\.decades must be a positive number; got nan"),
    ({"analysis": {"decades": '"10"'}}, r"\[analysis\]\.decades must be a positive number; got '10'"),
    ({"analysis": {"decades": "true"}}, r"\[analysis\]\.decades must be a positive number; got True"),
]


@pytest.mark.parametrize(("tables", "match"), BAD)
def test_errors_name_the_key_and_its_table(tables, match):
    text = _toml(**tables)
    with pytest.raises(ConfigError, match=match):
        parse_config(text)
    assert issubclass(ConfigError, ValueError)


def test_a_table_that_is_not_a_table_is_named():
    with pytest.raises(ConfigError, match=r"my\.toml: \[grid\] must be a table"):
        parse_config("grid = 3\n" + _toml(), source_name="my.toml")


def test_invalid_toml_names_its_source_and_position():
    with pytest.raises(ConfigError, match=r"^my\.toml is not valid TOML: .*line 2"):
        parse_config("[model]\ninput_size = = 2\n", source_name="my.toml")
    with pytest.raises(ConfigError, match=r"^config is not valid TOML"):
        parse_config("[model\n")


def test_load_config_reads_a_file_and_names_it_in_errors(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(_toml(grid={"seed": "[1, 2]"}))
    cfg = load_config(good)
    assert cfg.grid.axes == {"seed": (1, 2)} and cfg.source == good.read_text()
    assert load_config(str(good)).resolved() == cfg.resolved()
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"config file {re.escape(repr(str(missing)))} does not exist"):
        load_config(missing)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path)  # a directory is no config file
    bad = tmp_path / "bad.toml"
    bad.write_text(_toml(extra={"x": "1"}))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(bad))}: unknown table"):
        load_config(bad)


@pytest.mark.parametrize(
    "text",
    [
        DEFAULT_CONFIG,
        _toml(
            model={"hidden_size": "[3, 4]", "activation": '["relu", "tanh"]'},
            grid={
                "scheme": '["normal", "orthogonal"]',
                "weight_scale": "{start = 0.1, stop = 3.0, num = 4, log = true}",
            },
            data={"seq_len": "[8, 12]", "input_seed": "5"},
            analysis={"wrt": '["state"]', "decades": "3.5", "dtype": '"float64"', "chunk_size": "7"},
        ),
    ],
)
def test_resolved_round_trips_through_toml(text):
    cfg = parse_config(text)
    resolved = cfg.resolved()
    assert json.loads(json.dumps(resolved)) == resolved  # JSON-ready
    again = parse_config(_emit(resolved))
    assert again.resolved() == resolved
    assert config_hash(again) == config_hash(cfg)
    assert again.specs() == cfg.specs() and again.dims == cfg.dims
    for name, column in cfg.grid.values().items():
        np.testing.assert_array_equal(again.grid.values()[name], column)


def test_equivalent_configs_have_the_same_hash_and_different_ones_do_not():
    base = _toml(grid={"forget_bias": "[1.0, 2.0]"})
    same = [
        _toml(grid={"forget_bias": "{start = 1, stop = 2, num = 2}"}),
        _toml(grid={"forget_bias": "{start = 1.0, stop = 2.0, num = 2, log = true}"}),
        "# a comment\n" + _toml(
            model={"hidden_size": "[3]", "activation": '"tanh"', "recurrent_activation": '["sigmoid"]'},
            grid={"forget_bias": "[1.0, 2.0]"},
            data={"input_seed": "0"},
            analysis={"wrt": '["h", "state"]', "decades": "10", "dtype": '"float32"', "chunk_size": '"auto"'},
        ),
        # the chunk size "auto" resolves to (256) and the budget it came from, which changes nothing
        _toml(grid={"forget_bias": "[1.0, 2.0]"}, analysis={"chunk_size": "256"}),
        _toml(grid={"forget_bias": "[1.0, 2.0]"}, analysis={"memory_budget_mb": "2048"}),
    ]
    different = [
        _toml(grid={"forget_bias": "[1.0, 2.5]"}),
        _toml(grid={"forget_bias": "[2.0, 1.0]"}),
        _toml(grid={"forget_bias": "[1.0, 2.0]", "seed": "0"}),
        _toml(grid={"forget_bias": "[1.0, 2.0]"}, analysis={"wrt": '"h"'}),
        _toml(grid={"forget_bias": "[1.0, 2.0]"}, analysis={"dtype": '"float64"'}),
        _toml(grid={"forget_bias": "[1.0, 2.0]"}, data={"input_seed": "1"}),
        _toml(grid={"forget_bias": "[1.0, 2.0]"}, model={"input_size": "3"}),
        _toml(grid={"forget_bias": "[1.0, 2.0]"}, analysis={"chunk_size": "64"}),  # another store layout
    ]
    h = config_hash(parse_config(base))
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    for text in same:
        assert config_hash(parse_config(text)) == h, text
    hashes = {config_hash(parse_config(text)) for text in different}
    assert len(hashes) == len(different) and h not in hashes


def test_integer_and_float_grid_values_hash_the_same():
    ints = parse_config(_toml(grid={"forget_bias": "[1, 2]", "weight_scale": "3"}))
    floats = parse_config(_toml(grid={"forget_bias": "[1.0, 2.0]", "weight_scale": "3.0"}))
    assert config_hash(ints) == config_hash(floats)


def test_seed_beyond_uint32_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\[grid\]\.seed"):
        parse_config(_toml(grid={"seed": "[0, 4294967296]"}))


def test_input_seed_beyond_uint32_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\[data\]\.input_seed"):
        parse_config(_toml(data={"input_seed": "4294967296"}))


def test_nested_list_activation_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\[model\]\.activation"):
        parse_config(_toml(model={"activation": '[["tanh"]]'}))


def test_non_boolean_log_flag_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\[grid\]\.weight_scale\.log"):
        parse_config(_toml(grid={"weight_scale": '{start = 1.0, stop = 4.0, num = 3, log = "no"}'}))


def test_auto_chunk_size_is_the_largest_that_fits_the_memory_budget():
    text = _toml(model={"hidden_size": "64"}, data={"seq_len": "2000"}, analysis={"memory_budget_mb": "100"})
    cfg = parse_config(text)
    n = cfg.work_chunk_size()
    spec = cfg.specs()[0][1]
    budget = 100 * 2**20
    assert 1 <= n < MAX_AUTO_CHUNK
    assert chunk_bytes(spec, n, n_profiles=2) <= budget < chunk_bytes(spec, n + 1, n_profiles=2)
    wider = parse_config(text.replace("memory_budget_mb = 100", "memory_budget_mb = 400")).work_chunk_size()
    assert wider > n
    assert parse_config(text.replace("memory_budget_mb = 100", 'memory_budget_mb = 100\nchunk_size = 3')).work_chunk_size() == 3


def test_a_budget_too_small_for_one_variant_is_refused_at_parse_time():
    text = _toml(model={"hidden_size": "512"}, data={"seq_len": "100000"}, analysis={"memory_budget_mb": "64"})
    with pytest.raises(ConfigError, match=r"\[analysis\]\.memory_budget_mb: one variant of .* needs about [0-9.]+ MiB, "
                                          r"more than the memory budget of 64\.0 MiB"):
        parse_config(text)
    for bad in ("0", "-1", '"big"', "true", "inf", "nan"):
        with pytest.raises(ConfigError, match=r"\[analysis\]\.memory_budget_mb must be a positive number of MiB"):
            parse_config(_toml(analysis={"memory_budget_mb": bad}))


def test_a_range_of_seeds_gives_integer_seeds_and_a_fractional_one_is_refused():
    cfg = parse_config(_toml(grid={"seed": "{start = 0, stop = 6, num = 4}"}))
    assert cfg.grid.axes["seed"] == (0, 2, 4, 6) and all(type(s) is int for s in cfg.grid.axes["seed"])
    with pytest.raises(ConfigError, match=r"\[grid\]\.seed must hold integers in \[0, 4294967295\]; got 0\.5"):
        parse_config(_toml(grid={"seed": "{start = 0, stop = 1, num = 3}"}))
