"""Config parsing: the embedded default, ranges, validation messages, specs and dims, resolved() and its hash;
the shared field rules, keys of other commands, every file in configs/ and the reference table."""

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import tomllib

from gradflow.collapse.metrics import THRESHOLDS
from gradflow.config import (
    COMMANDS,
    DEFAULT_COLLAPSE_CONFIG,
    DEFAULT_CONFIG,
    DIAGNOSE_EXAMPLE,
    SHAPE_AXES,
    AnalysisTable,
    Config,
    ConfigError,
    DataTable,
    GridTable,
    ModelTable,
    TrainTable,
    load_config,
    parse_config,
    reference_markdown,
)
from gradflow.config.fields import MAX_SEED, SEED, axis, choice, integers, numbers, values
from gradflow.config.tables import MAX_STORE_BYTES, MAX_VARIANTS, TABLES, Derived, Required, users
from gradflow.config.tables import keys as key_fields
from gradflow.flow.memory import MAX_AUTO_CHUNK, chunk_bytes
from gradflow.flow.variants import GRID_DEFAULTS, ModelSpec
from gradflow.profiles.job import profile_job
from gradflow.sweep.job import config_hash
from gradflow.training.train import TRAIN_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]

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
    assert isinstance(cfg, Config) and cfg.source == DEFAULT_CONFIG and cfg.command == "sweep"
    assert cfg.model.input_size == 8
    assert cfg.shape_axes == {
        "hidden_size": (32,), "activation": ("tanh",), "recurrent_activation": ("sigmoid",), "seq_len": (200,)
    }
    assert tuple(cfg.shape_axes) == SHAPE_AXES["sweep"]
    assert cfg.variants().names == ("forget_bias", "weight_scale", "seed") and cfg.variants().shape == (25, 13, 3)
    assert list(cfg.grid.axes["forget_bias"]) == [-3.0 + 0.25 * k for k in range(25)]
    ws = np.array(cfg.grid.axes["weight_scale"])
    np.testing.assert_allclose(ws, 0.25 * 2.0 ** (np.arange(13) / 3), rtol=1e-11)  # 0.25 .. 4, 2^(1/3) apart
    assert (ws[0], ws[3], ws[6], ws[9], ws[12]) == (0.25, 0.5, 1.0, 2.0, 4.0)  # the decimals the range names
    assert cfg.grid.axes["seed"] == (0, 1, 2)
    a = cfg.analysis
    settings = (cfg.data.input_seed, a.wrt, a.decades, a.dtype, a.chunk_size)
    assert settings == (0, ("h", "state"), 10.0, "float32", "auto") and a.memory_budget_mb == 1024.0
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
    values = parse_config(_toml(grid={"forget_bias": literal})).grid.axes["forget_bias"]
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
    a = cfg.analysis
    assert (cfg.data.input_seed, a.wrt, a.decades, a.dtype, a.chunk_size) == (7, ("state",), 3.0, "float64", 5)
    assert isinstance(a.decades, float)
    minimal = parse_config(_toml())
    a = minimal.analysis
    assert (minimal.data.input_seed, a.wrt, a.decades, a.dtype, a.chunk_size) == (0, ("h", "state"), 10.0, "float32", "auto")
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
        {"grid": {"learnig_rate": "[0.1]"}},
        r"\[grid\]: unknown key\(s\) \['learnig_rate'\]; "
        r"allowed keys are \['forget_bias', 'scheme', 'seed', 'weight_scale'\]",
    ),
    # keys and tables of the other commands
    (
        {"grid": {"learning_rate": "[0.1]"}},
        r"\[grid\]\.learning_rate is not used by 'gradflow sweep' \(it is for collapse, diagnose\)",
    ),
    ({"data": {"task": '"recall"'}}, r"\[data\]\.task is not used by 'gradflow sweep' \(it is for collapse, diagnose\)"),
    ({"analysis": {"map": '["seed"]'}}, r"\[analysis\]\.map is not used by 'gradflow sweep' \(it is for collapse\)"),
    ({"train": {"steps": "10"}}, r"\[train\] is not used by 'gradflow sweep' \(it is for collapse, diagnose\)"),
    (
        {"analysis": {"metod": '"exact"'}},
        r"\[analysis\]: unknown key\(s\) \['metod'\]; allowed keys are \['chunk_size', 'decades', 'dtype', "
        r"'lyapunov', 'memory_budget_mb', 'method', 'probes', 'wrt'\]",
    ),
    # the analysis methods
    ({"analysis": {"method": '"hutchinson"'}}, r"\[analysis\]\.method: 'hutchinson' is not one of \['exact', 'probes', 'spectral'\]"),
    ({"analysis": {"method": '"probes"', "probes": "1"}}, r"\[analysis\]\.probes must hold integers >= 2; got 1"),
    ({"analysis": {"probes": "8"}}, r'\[analysis\]\.probes = 8 applies to method = "probes" only'),
    ({"analysis": {"lyapunov": "-1"}}, r"\[analysis\]\.lyapunov must hold integers >= 0; got -1"),
    ({"analysis": {"lyapunov": "7"}, "model": {"hidden_size": "[3, 8]"}},
     r"\[analysis\]\.lyapunov = 7: at most 2 x hidden_size = 6 exponents"),
    ({"analysis": {"lyapunov": "2"}, "data": {"seq_len": "[17, 40]"}},
     r"\[analysis\]\.lyapunov needs \[data\]\.seq_len >= 18"),
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
    ({"grid": {"weight_scale": '["big"]'}}, r"\[grid\]\.weight_scale must hold positive numbers"),
    ({"grid": {"weight_scale": "[1.0, true]"}}, r"\[grid\]\.weight_scale must hold positive numbers"),
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
    ({"analysis": {"decades": "inf"}}, r"\[analysis\]\.decades must be a positive number; got inf"),
    # quiet nonsense: a repeated value would be computed twice under one coordinate
    ({"grid": {"seed": "[0, 0]"}}, r"^\[grid\]\.seed repeats a value: \[0, 0\]$"),
    ({"grid": {"forget_bias": "[1.0, 1.0]"}}, r"^\[grid\]\.forget_bias repeats a value: \[1\.0, 1\.0\]$"),
    ({"grid": {"forget_bias": "[1, 2, 1.0]"}}, r"\[grid\]\.forget_bias repeats a value: \[1\.0, 2\.0, 1\.0\]"),
    ({"grid": {"scheme": '["normal", "normal"]'}}, r"\[grid\]\.scheme repeats a value"),
    ({"model": {"hidden_size": "[16, 16]"}}, r"\[model\]\.hidden_size repeats a value: \[16, 16\]"),
    ({"model": {"activation": '["tanh", "relu", "tanh"]'}}, r"\[model\]\.activation repeats a value"),
    ({"data": {"seq_len": "[8, 8]"}}, r"\[data\]\.seq_len repeats a value: \[8, 8\]"),
    ({"grid": {"forget_bias": "{start = 1.0, stop = 1.0, num = 3}"}},
     r"\[grid\]\.forget_bias repeats a value: \[1\.0, 1\.0, 1\.0\]"),
    ({"grid": {"forget_bias": "{start = 1.0, stop = 1.0, num = 1000}"}},
     r"\[grid\]\.forget_bias repeats values \(1,000 values, 1 distinct\), e\.g\. \[1\.0, 1\.0, 1\.0\]$"),
    ({"model": {"hidden_size": "{start = 1, stop = 3, num = 3}"}, "data": {"seq_len": "[4, 8]"}}, None),
    ({"grid": {"weight_scale": "0"}}, r"\[grid\]\.weight_scale must hold positive numbers; got \[0\]"),
    ({"grid": {"weight_scale": "[1.0, -1.0]"}}, r"\[grid\]\.weight_scale must hold positive numbers"),
    # ranges are bounded and finite before any value is made
    ({"grid": {"forget_bias": "{start = 0.0, stop = 1.0, num = 1000000000}"}},
     r"\[grid\]\.forget_bias\.num must be at most 1,000,000 \(the values of one range\); got 1,000,000,000"),
    ({"grid": {"forget_bias": "{start = 0.0, stop = 1.0, num = 1e9}"}},
     r"\[grid\]\.forget_bias\.num must be a positive integer; got 1000000000\.0"),
    ({"grid": {"forget_bias": "{start = 0.0, stop = inf, num = 3}"}},
     r"\[grid\]\.forget_bias\.stop must be a finite number; got inf"),
    ({"grid": {"weight_scale": "{start = nan, stop = 1.0, num = 3, log = true}"}},
     r"\[grid\]\.weight_scale\.start must be a finite number; got nan"),
]


@pytest.mark.parametrize(("tables", "match"), BAD)
def test_errors_name_the_key_and_its_table(tables, match):
    text = _toml(**tables)
    if match is None:  # a control: distinct values pass
        parse_config(text)
        return
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
    for name, column in cfg.variants().values().items():
        np.testing.assert_array_equal(again.variants().values()[name], column)


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
    assert parse_config(text.replace("memory_budget_mb = 100", 'memory_budget_mb = 100\nchunk_size = 1')).work_chunk_size() == 1


def test_a_budget_too_small_for_one_variant_is_refused_at_parse_time():
    text = _toml(model={"hidden_size": "512"}, data={"seq_len": "100000"}, analysis={"memory_budget_mb": "64"})
    with pytest.raises(ConfigError, match=r"\[analysis\]\.memory_budget_mb: one variant of .* needs about [0-9.]+ GiB, "
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


# -- sizes, checked before any work and any file --------------------------------------------------


def test_a_grid_of_too_many_variants_is_refused_at_parse_time_with_its_store_size():
    text = _toml(model={"input_size": "8", "hidden_size": "32"}, data={"seq_len": "200"}, grid={
        "forget_bias": "{start = -3.0, stop = 3.0, num = 10000}", "weight_scale": "{start = 0.25, stop = 4.0, num = 10000}"})
    # 2 profiles of 200 lags (+ horizon, decay rate) and 4 saturations in float32 and a flag: 1,633 bytes a variant
    with pytest.raises(ConfigError, match=re.escape(
            "[grid]: the sweep has 100,000,000 variants x 1 shape combination = 100,000,000 variants, more than the "
            f"{MAX_VARIANTS:,} one config may hold; its store would hold about 152.1 GiB; sweep fewer values")):
        parse_config(text)
    shapes = _toml(model={"hidden_size": "[2, 3, 4, 5]"}, data={"seq_len": "[6, 7, 8]"},
                   grid={"forget_bias": "{start = -3.0, stop = 3.0, num = 1000}", "seed": "{start = 0, stop = 999, num = 1000}"})
    with pytest.raises(ConfigError, match=r"has 1,000,000 variants x 12 shape combinations = 12,000,000 variants"):
        parse_config(shapes)


def test_a_store_beyond_the_limit_is_refused_at_parse_time():
    text = _toml(data={"seq_len": "200000"}, grid={"forget_bias": "{start = -3.0, stop = 3.0, num = 1000000}"})
    with pytest.raises(ConfigError, match=r"^\[grid\]: the sweep has 1,000,000 variants x 1 shape combination; its "
                                          r"store would hold about 1\.5 TiB, more than the 1\.0 TiB one config may write"):
        parse_config(text)
    assert MAX_STORE_BYTES == 2**40


@pytest.mark.parametrize("wrt", ['"h"', '["h", "state"]'])
@pytest.mark.parametrize("dtype", ['"float32"', '"float64"'])
def test_the_store_estimate_is_the_bytes_of_every_stored_variable(wrt, dtype):
    cfg = parse_config(_toml(model={"hidden_size": "[2, 3]"}, data={"seq_len": "[5, 9]"},
                             grid={"forget_bias": "[0.0, 1.0, 2.0]", "seed": "[0, 1]"},
                             analysis={"wrt": wrt, "dtype": dtype}))
    job = profile_job(cfg)
    per_variant = sum(v.dtype.itemsize * math.prod(len(job.extra_coords[d]) for d in v.extra_dims)
                      for v in job.variables.values())
    assert cfg.n_variants() == (6, 4)
    assert cfg.store_bytes() == 6 * 4 * per_variant


def test_an_explicit_chunk_size_is_checked_against_the_memory_budget():
    wide = _toml(model={"hidden_size": "2048"}, data={"seq_len": "2000"}, analysis={"chunk_size": "8"})
    with pytest.raises(ConfigError, match=r'^\[analysis\]\.chunk_size = 8: a chunk of 8 variants of ModelSpec\(.*'
                                          r"hidden_size=2048.*\) needs about [0-9.]+ GiB, more than the memory budget "
                                          r"of 1\.0 GiB \(\[analysis\]\.memory_budget_mb = 1024\); lower chunk_size, "
                                          r'raise memory_budget_mb or use "auto"$'):
        parse_config(wide)
    huge = _toml(model={"hidden_size": "100000"}, analysis={"chunk_size": "1", "memory_budget_mb": "4096"})
    with pytest.raises(ConfigError, match=r"chunk_size = 1: a chunk of 1 variant of .* needs about [0-9.]+ TiB, "
                                          r"more than the memory budget of 4\.0 GiB"):
        parse_config(huge)
    fits = parse_config(_toml(model={"hidden_size": "64"}, data={"seq_len": "200"}, analysis={"chunk_size": "16"}))
    assert fits.work_chunk_size() == 16


def test_sizes_in_messages_are_readable():
    with pytest.raises(ConfigError) as caught:
        parse_config(_toml(analysis={"memory_budget_mb": "0.001"}))
    message = str(caught.value)
    assert re.search(r"needs about [0-9]+\.[0-9] KiB, more than the memory budget of 1\.0 KiB", message), message
    assert "0.0 MiB" not in message


# -- every key refuses what it cannot mean, in every command's vocabulary ---------------------------

EMBEDDED_TEXT = {"sweep": DEFAULT_CONFIG, "collapse": DEFAULT_COLLAPSE_CONFIG, "diagnose": DIAGNOSE_EXAMPLE}


def _literal(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return json.dumps(value)


def _with(command: str, table: str, key: str, value) -> str:
    """The embedded config of ``command`` with ``[table].key = value`` (as TOML)."""
    raw = tomllib.loads(EMBEDDED_TEXT[command])
    raw.setdefault(table, {})[key] = value
    return "".join(f"[{t}]\n" + "".join(f"{k} = {_literal(v)}\n" for k, v in keys.items()) + "\n"
                   for t, keys in raw.items())


NUMBER_KEYS = [(name, f.name, command) for name, table in TABLES.items() for f in key_fields(table)
               if "number" in f.metadata["rule"].type and "integer" not in f.metadata["rule"].type
               for command in users(f)]


@pytest.mark.parametrize(("table", "key", "command"), NUMBER_KEYS, ids=str)
def test_every_number_key_refuses_nan_and_infinities(table, key, command):
    assert len(NUMBER_KEYS) >= 15
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ConfigError, match=rf"^\[{table}\]\.{key} must (be|hold) "):
            parse_config(_with(command, table, key, bad), command=command)


@pytest.mark.parametrize("command", ["collapse", "diagnose"])
@pytest.mark.parametrize(("key", "bad", "message"), [
    ("l2", -0.1, r"\[grid\]\.l2 must hold numbers >= 0; got \[-0\.1\]"),
    ("clip_norm", -1.0, r"\[grid\]\.clip_norm must hold numbers >= 0; got \[-1\.0\]"),
    ("weight_decay", [0.0, -1e-3], r"\[grid\]\.weight_decay must hold numbers >= 0"),
    ("learning_rate", 0.0, r"\[grid\]\.learning_rate must hold positive numbers"),
    ("weight_scale", -1.0, r"\[grid\]\.weight_scale must hold positive numbers"),
    ("seed", [0, 0], r"\[grid\]\.seed repeats a value: \[0, 0\]"),
])
def test_training_settings_refuse_what_they_cannot_mean_in_every_command(command, key, bad, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_with(command, "grid", key, bad), command=command)
    with pytest.raises(ConfigError, match=rf"\[grid\]\.{key} is not used by 'gradflow sweep'|{message}"):
        parse_config(_with("sweep", "grid", key, bad))


# -- the shared field rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "raw", "want"),
    [
        (integers(), 3, 3),
        (integers(0, 5), 0, 0),
        (SEED, MAX_SEED, MAX_SEED),
        (numbers("finite"), -2, -2.0),
        (numbers("positive"), 0.5, 0.5),
        (numbers("nonnegative"), 0, 0.0),
        (numbers("fraction"), 0.25, 0.25),
        (choice(("a", "b")), "b", "b"),
        (axis(integers()), [1, 2], (1, 2)),
        (axis(integers()), {"start": 16, "stop": 64, "num": 4}, (16, 32, 48, 64)),
        (axis(numbers("finite")), 3, (3.0,)),
        (axis(choice(("a", "b"))), "a", ("a",)),
    ],
)
def test_field_rules_return_typed_values(rule, raw, want):
    got = rule("[t].k", raw)
    assert got == want and type(got) is type(want)
    if isinstance(want, tuple):
        assert [type(v) for v in got] == [type(v) for v in want] and rule.is_axis


@pytest.mark.parametrize(
    ("rule", "raw", "message"),
    [
        (integers(), 0, r"^\[t\]\.k must hold integers >= 1; got 0$"),
        (integers(), True, r"must hold integers >= 1; got True$"),
        (integers(), 2.0, r"must hold integers >= 1; got 2\.0$"),
        (SEED, -1, r"^\[t\]\.k must hold integers in \[0, 4294967295\]; got -1$"),
        (numbers("finite"), float("nan"), r"^\[t\]\.k must be a finite number; got nan$"),
        (numbers("finite"), "1", r"must be a finite number; got '1'$"),
        (numbers("positive"), 0, r"must be a positive number; got 0$"),
        (numbers("positive"), float("inf"), r"must be a positive number; got inf$"),
        (numbers("nonnegative"), -1e-9, r"must be a number >= 0; got -1e-09$"),
        (numbers("fraction"), 1.0, r"must be a fraction in \(0, 1\); got 1\.0$"),
        (numbers("fraction"), 0, r"must be a fraction in \(0, 1\); got 0$"),
        (numbers("positive", unit="MiB"), -1, r"must be a positive number of MiB; got -1$"),
        (choice(("a", "b")), "c", r"^\[t\]\.k: 'c' is not one of \['a', 'b'\]$"),
        (axis(numbers("positive")), [1.0, 0.0], r"^\[t\]\.k must hold positive numbers; got \[1\.0, 0\.0\]$"),
        (axis(integers(2)), [3, 1], r"must hold integers >= 2; got 1$"),
        (axis(choice(("a", "b"))), ["a", "a"], r"^\[t\]\.k repeats a value: \['a', 'a'\]$"),
        (axis(integers()), [], r"^\[t\]\.k is an empty list; give at least one value$"),
        (axis(integers()), {"start": 0, "stop": 1, "num": 3}, r"must hold integers >= 1; got 0$"),
        (axis(SEED), {"start": 0, "stop": 1, "num": 3}, r"must hold integers in \[0, 4294967295\]; got 0\.5$"),
    ],
)
def test_field_rules_refuse_bad_values_naming_the_key(rule, raw, message):
    with pytest.raises(ConfigError, match=message):
        rule("[t].k", raw)


@pytest.mark.parametrize(("raw", "named"), [
    ({"start": 0.25, "stop": 4.0, "num": 13, "log": True}, [0.25, 0.5, 1.0, 2.0, 4.0]),
    ({"start": 0.001, "stop": 1000.0, "num": 19, "log": True}, [0.001, 0.01, 0.1, 1, 10, 100, 1000]),
    ({"start": 0.1, "stop": 0.7, "num": 7}, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]),
    ({"start": -0.3, "stop": 0.3, "num": 7}, [-0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3]),
])
def test_a_range_holds_the_decimal_values_it_names(raw, named):
    got = values("[t].k", raw)
    assert all(v in got for v in named), got
    spaced = (np.geomspace if raw.get("log") else np.linspace)(raw["start"], raw["stop"], raw["num"])
    np.testing.assert_allclose(got, spaced, rtol=1e-11, atol=1e-15)
    assert len(set(got)) == len(got)


def test_a_range_gives_integers_where_its_values_are_whole():
    assert values("[t].k", {"start": 0, "stop": 6, "num": 4}) == [0, 2, 4, 6]
    assert values("[t].k", {"start": 0.0, "stop": 1.0, "num": 3}) == [0, 0.5, 1]
    assert parse_config(_toml(model={"hidden_size": "{start = 2, stop = 6, num = 3}"})).model.hidden_size == (2, 4, 6)


# -- the vocabulary -------------------------------------------------------------------------------


def test_every_key_has_one_table_a_type_a_meaning_and_defaults_its_rule_accepts():
    names = [f.name for table in TABLES.values() for f in key_fields(table)]
    assert len(names) == len(set(names)), "a key has one name in one table"
    assert set(TABLES) == {"model", "grid", "data", "train", "analysis"}
    for table in TABLES.values():
        assert dataclasses.is_dataclass(table) and table.__dataclass_params__.frozen
        for f in key_fields(table):
            assert f.type and f.metadata["meaning"] and set(users(f)) <= set(COMMANDS), f.name
            for default in f.metadata["defaults"].values():
                if not isinstance(default, (Derived, Required)):
                    f.metadata["rule"](f.name, default)


def test_the_grid_and_verdict_defaults_are_those_of_the_engine_and_the_trainer():
    sweep, collapse = parse_config(_toml()), parse_config('[data]\ntask = "seed"\n', command="collapse")
    diagnose = parse_config('[data]\ntask = "seed"\n', command="diagnose")
    for cfg, defaults in ((sweep, GRID_DEFAULTS), (collapse, TRAIN_DEFAULTS), (diagnose, TRAIN_DEFAULTS)):
        for name, value in defaults.items():
            if (cfg.command, name) != ("diagnose", "seed"):
                assert getattr(cfg.grid, name) == (value,), (cfg.command, name)
    assert sweep.grid.learning_rate is None and sweep.grid.scheme == ("orthogonal",)
    assert collapse.grid.scheme == diagnose.grid.scheme == ("glorot_uniform",)
    assert diagnose.grid.seed == (0, 1, 2) and diagnose.grid.axes == {"seed": (0, 1, 2)}
    assert collapse.grid.axes == {} and collapse.variants().size == 1
    for cfg in (collapse, diagnose):
        assert (cfg.analysis.spread_threshold, cfg.analysis.loss_threshold) == (THRESHOLDS["spread"], THRESHOLDS["loss"])
    assert (collapse.model.hidden_size, diagnose.model.hidden_size, collapse.data.n, diagnose.data.n) == ((32,), (50,), (512,), (100,))
    assert (collapse.train.steps, collapse.train.epochs, diagnose.train.steps, diagnose.train.epochs) == (400, None, None, 100)


def test_tables_are_typed_and_frozen_and_unused_keys_are_none():
    cfg = load_config()
    assert [type(t) for t in (cfg.model, cfg.grid, cfg.data, cfg.train, cfg.analysis)] == [
        ModelTable, GridTable, DataTable, TrainTable, AnalysisTable]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.hidden_size = (8,)
    assert cfg.data.task is None and cfg.analysis.map is None
    assert all(getattr(cfg.train, f.name) is None for f in key_fields(TrainTable))
    with pytest.raises(ValueError, match="make_task\\(\\) is for collapse and diagnose configs; this is a sweep config"):
        cfg.make_task()
    with pytest.raises(ValueError, match="specs\\(\\) is for sweep configs; this is a collapse config"):
        load_config(command="collapse").specs()


def test_a_key_of_another_command_says_which_commands_use_it():
    with pytest.raises(ConfigError, match=r"\[train\] is not used by 'gradflow sweep' \(it is for collapse, diagnose\)"):
        parse_config(DEFAULT_COLLAPSE_CONFIG)
    with pytest.raises(ConfigError, match=r"\[data\]\.input_seed is not used by 'gradflow collapse' \(it is for sweep\)"):
        parse_config(DEFAULT_CONFIG, command="collapse")
    with pytest.raises(ConfigError, match=r"\[analysis\]\.map is not used by 'gradflow diagnose' \(it is for collapse\)"):
        parse_config(DIAGNOSE_EXAMPLE + '[analysis]\nmap = ["seed"]\n', command="diagnose")
    with pytest.raises(ConfigError, match=r"\[analysis\]\.wrt is not used by 'gradflow collapse' \(it is for sweep\)"):
        parse_config(DEFAULT_COLLAPSE_CONFIG.replace("[analysis]\n", '[analysis]\nwrt = "h"\n'), command="collapse")
    with pytest.raises(ConfigError, match=r"\[train\]: unknown key\(s\) \['seeds'\]; allowed keys are \['batch_size', "
                                          r"'checkpoints', 'epochs', 'grad_probe', 'optimizer', 'steps'\]"):
        parse_config(DIAGNOSE_EXAMPLE.replace("[train]\n", "[train]\nseeds = 3\n"), command="diagnose")
    with pytest.raises(ConfigError, match=r"unknown table\(s\) \['task'\]; allowed tables are \['model', 'grid', 'data', "
                                          r"'train', 'analysis'\]"):
        parse_config('[task]\nname = "recall"\n', command="collapse")
    with pytest.raises(ValueError, match=r"command must be one of \['sweep', 'collapse', 'diagnose'\]; got 'train'"):
        parse_config(DEFAULT_CONFIG, command="train")


def test_each_command_has_an_embedded_config():
    for command, text in (("sweep", DEFAULT_CONFIG), ("collapse", DEFAULT_COLLAPSE_CONFIG), ("diagnose", DIAGNOSE_EXAMPLE)):
        cfg = load_config(command=command)
        assert cfg.command == command and cfg.source == text
        assert json.loads(json.dumps(cfg.resolved())) == cfg.resolved()


# -- every config in configs/, and the reference --------------------------------------------------

CONFIG_FILES = sorted((ROOT / "configs").glob("*.toml"))


def _command_line(path: Path) -> tuple[str, str]:
    """(command, config path) from the first line: ``# gradflow COMMAND [--config] configs/NAME.toml ...``."""
    match = re.match(r"# gradflow (sweep|run|collapse|diagnose) (?:--config )?(\S+)", path.read_text().splitlines()[0])
    assert match, f"{path.name}: the first line must be '# gradflow COMMAND configs/{path.name} ...'"
    return match.group(1), match.group(2)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_config_in_configs_loads_for_the_command_its_first_line_names(path):
    command, named = _command_line(path)
    assert named == f"configs/{path.name}"
    cfg = load_config(path, command="sweep" if command == "run" else command)
    assert cfg.source == path.read_text()
    assert json.loads(json.dumps(cfg.resolved())) == cfg.resolved()


def test_configs_has_an_example_for_every_command():
    commands = {_command_line(path)[0] for path in CONFIG_FILES}
    assert {"sweep" if c == "run" else c for c in commands} == set(COMMANDS)


def test_the_reference_lists_every_key_once_with_its_table():
    text = reference_markdown()
    rows = [line for line in text.splitlines() if line.startswith("| `[")]
    assert len(rows) == sum(len(key_fields(table)) for table in TABLES.values())
    for name, table in TABLES.items():
        for f in key_fields(table):
            assert sum(row.startswith(f"| `[{name}]` | `{f.name}` |") for row in rows) == 1
    assert all(row.count(" | ") == 5 for row in rows)  # a | inside a cell is escaped
    assert "| `[grid]` | `scheme` | " in text and 'sweep: `"orthogonal"`; collapse, diagnose: `"glorot_uniform"`' in text


def test_the_readme_holds_the_reference():
    readme = (ROOT / "README.md").read_text()
    assert "## Configuration reference" in readme, "README.md must hold the reference: paste reference_markdown()"
    section = readme.split("## Configuration reference", 1)[1]
    assert reference_markdown() in section


def test_the_embedded_diagnose_example_is_the_setup_of_configs_diagnose_seed():
    from_file = load_config(ROOT / "configs" / "diagnose_seed.toml", command="diagnose")
    assert dataclasses.replace(from_file, source="") == dataclasses.replace(load_config(command="diagnose"), source="")
