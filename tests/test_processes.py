"""Shares of a sweep: --shard parsing, SLURM job arrays, composition with jax.distributed."""

import pytest

from gradflow.sweep.processes import parse_shard, process_share, slurm_shard


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1) and parse_shard(" 3 / 8 ") == (3, 8)
    for bad in ("1/1", "4/2", "-1/2", "1", "a/b", "1/0", ""):
        with pytest.raises(ValueError, match=r"--shard must be i/n with 0 <= i < n \(for example 0/4\); got"):
            parse_shard(bad)


def test_slurm_array_variables():
    assert slurm_shard({}) is None
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "3"}) is None  # no count: not an array gradflow can split
    env = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert slurm_shard(env) == (2, 4)
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}) == (1, 2)
    with pytest.raises(ValueError, match="outside the array"):
        slurm_shard({**env, "SLURM_ARRAY_TASK_ID": "14"})
    with pytest.raises(ValueError, match="needs a contiguous array without a step"):
        slurm_shard({**env, "SLURM_ARRAY_TASK_MAX": "16"})  # --array=10-16:2 has 4 tasks
    assert slurm_shard({**env, "SLURM_ARRAY_TASK_MAX": "13"}) == (2, 4)
    with pytest.raises(ValueError, match="must be integers"):
        slurm_shard({**env, "SLURM_ARRAY_TASK_ID": "x"})


def test_process_share_in_a_single_process(monkeypatch):
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert process_share() == (0, 1)
    assert process_share((2, 5)) == (2, 5)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert process_share() == (1, 3)
    assert process_share((0, 2)) == (0, 2)  # an explicit --shard wins


def test_process_share_composes_with_jax_distributed(monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_count", lambda: 4)
    monkeypatch.setattr(jax, "process_index", lambda: 3)
    assert process_share((1, 2)) == (1 * 4 + 3, 8)
