"""Task generators hold their documented structure; user data is validated with errors naming the key."""

import numpy as np
import pytest

from gradflow.data.tasks import adding_task, load_task, recall_task, seed_task, split, task_from_arrays


def test_seed_task_is_uniform_features_and_random_binary_labels():
    task = seed_task(1000, seed=3)
    assert task.X.shape == (1000, 20, 10) and task.X.dtype == np.float32 and task.y.shape == (1000,)
    assert 0 <= task.X.min() and task.X.max() < 1 and abs(task.X.mean() - 0.5) < 0.01
    assert set(np.unique(task.y)) == {0.0, 1.0} and abs(task.y.mean() - 0.5) < 0.06
    assert task.kind == "binary" and task.lag is None
    assert np.array_equal(seed_task(1000, seed=3).X, task.X) and not np.array_equal(seed_task(1000, seed=4).X, task.X)


def test_recall_task_carries_the_label_in_the_first_input_only():
    task = recall_task(500, seq_len=30, features=2, seed=1)
    assert task.X.shape == (500, 30, 2) and task.lag == 29 and task.kind == "binary"
    np.testing.assert_array_equal(task.X[:, 0, 0], 2 * task.y - 1)
    rest = task.X[:, 1:].reshape(500, -1)
    # the rest is label-independent noise of unit variance
    assert abs(rest.std() - 1) < 0.02
    assert abs(np.corrcoef(rest.mean(1), task.y)[0, 1]) < 0.15


def test_adding_problem_has_one_marker_per_half_and_sums_the_marked_values():
    task = adding_task(300, seq_len=40, seed=2)
    values, markers = task.X[..., 0], task.X[..., 1]
    assert task.X.shape == (300, 40, 2) and task.kind == "regression" and task.lag == 20
    np.testing.assert_array_equal(markers[:, :20].sum(1), 1)
    np.testing.assert_array_equal(markers[:, 20:].sum(1), 1)
    np.testing.assert_allclose(task.y, (values * markers).sum(1), rtol=1e-6)
    assert abs(task.y.var() - 1 / 6) < 0.03  # the constant predictor's MSE


def test_a_user_npz_loads_with_its_kind(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 7, 3))
    cases = {
        "binary": rng.integers(0, 2, 12).astype(float),
        "multiclass": np.eye(4)[rng.integers(0, 4, 12)],
        "regression": rng.normal(size=(12, 2)),
    }
    for kind, y in cases.items():
        path = tmp_path / f"{kind}.npz"
        np.savez(path, X=X, y=y)
        task = load_task(path)
        assert task.kind == kind and task.name == kind and task.X.dtype == np.float32
        np.testing.assert_allclose(task.X, X.astype(np.float32))
        assert task.output_size == (1 if y.ndim == 1 else y.shape[1])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.zeros(3)}, r"missing key 'X'; expected X \(N, T, D\) and y \(N,\) or \(N, k\); found \['y'\]"),
        ({"X": np.zeros((3, 4, 2))}, r"missing key 'y'"),
        ({"X": np.zeros((3, 4)), "y": np.zeros(3)}, r"X must have shape \(N, T, D\) with N, T, D >= 1; got shape \(3, 4\)"),
        ({"X": np.zeros((3, 4, 2)), "y": np.zeros(4)}, r"y must have shape \(3,\) or \(3, k\) to match X \(3, 4, 2\); got shape \(4,\)"),
        ({"X": np.zeros((3, 4, 2)), "y": np.zeros((3, 2, 1))}, r"y must have shape \(3,\) or \(3, k\)"),
        ({"X": np.full((3, 4, 2), np.nan), "y": np.zeros(3)}, r"X holds 24 non-finite values \(first at index \(0, 0, 0\)\)"),
        ({"X": np.zeros((3, 4, 2)), "y": np.array([0, np.inf, 1])}, r"y holds 1 non-finite values \(first at index \(1,\)\)"),
        ({"X": np.array([[["a"]]]), "y": np.zeros(1)}, r"X must be real numbers \(N, T, D\); got dtype <U1"),
    ],
)
def test_malformed_user_data_names_the_key_and_the_expected_shape(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_task(path)


def test_missing_or_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz file"):
        load_task(tmp_path / "junk.npz")


def test_split_is_disjoint_and_complete():
    task = task_from_arrays({"X": np.arange(60.0).reshape(10, 3, 2), "y": np.arange(10.0) % 2}, name="t")
    train, val = split(task, validation=0.3, seed=1)
    assert (train.n, val.n) == (7, 3)
    firsts = sorted(np.concatenate([train.X[:, 0, 0], val.X[:, 0, 0]]).tolist())
    assert firsts == np.arange(0, 60, 6).tolist()
    assert split(seed_task(10), validation=0.2)[1].n == 2
    with pytest.raises(ValueError, match="validation must be a fraction"):
        split(task, validation=1.0)
    for bad in ({"n": 0}, {"n": 5, "seq_len": 0}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            seed_task(**bad)


def test_labels_shaped_n_by_1_are_squeezed_and_keep_their_kind():
    X = np.random.default_rng(0).normal(size=(6, 3, 2))
    labels = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    for y, kind in ((labels, "binary"), (labels + 0.5, "regression")):
        column = task_from_arrays({"X": X, "y": y[:, None]}, name="c")
        flat = task_from_arrays({"X": X, "y": y}, name="f")
        assert column.kind == flat.kind == kind and column.y.shape == (6,) and column.output_size == 1
        np.testing.assert_array_equal(column.y, flat.y)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.zeros((3, 4, 2), np.complex64), "y": np.zeros(3)}, r"X must be real numbers \(N, T, D\); got dtype complex64"),
        ({"X": np.zeros((3, 4, 2)), "y": np.zeros(3, np.complex128)}, r"y must be real numbers \(N,\) or \(N, k\); got dtype complex128"),
        ({"X": np.zeros((3, 4, 2), bool), "y": np.zeros(3)}, r"X must be real numbers \(N, T, D\); got dtype bool"),
        ({"X": np.zeros((3, 4, 2)), "y": np.array(["a", "b", "c"])}, r"y must be real numbers \(N,\) or \(N, k\); got dtype <U1"),
        ({"X": np.full((3, 4, 2), 1e300), "y": np.zeros(3)}, r"X holds 24 values beyond the float32 range"),
        ({"X": np.zeros((0, 4, 2)), "y": np.zeros(0)}, r"X must have shape \(N, T, D\) with N, T, D >= 1; got shape \(0, 4, 2\)"),
        ({"X": np.zeros((3, 0, 2)), "y": np.zeros(3)}, r"X must have shape \(N, T, D\) with N, T, D >= 1; got shape \(3, 0, 2\)"),
    ],
)
def test_complex_and_other_non_real_data_is_refused_naming_the_key(arrays, message):
    with pytest.raises(ValueError, match=message):
        task_from_arrays(arrays, name="bad")
