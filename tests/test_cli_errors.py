"""Bad input and faults reach the user as one line and an exit code, never a traceback, and lose nothing computed:
Ctrl-C (exit 130 with the resume command), an output path below a regular file, malformed SLURM variables,
--distributed without a coordinator, zero-byte and non-archive data files."""

import os
import signal
import subprocess
import time

import numpy as np
import pytest

from gradflow.cli import main
from gradflow.lstm.checks import read_npz
from test_store import SLOW, SMALL, _assert_same_store, _cli, _env, wait_for_chunks


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def _error_line(capsys) -> str:
    """The last line of stderr, which must be gradflow's one-line error (no traceback anywhere)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and ": error: " in err.splitlines()[-1], err
    return err.splitlines()[-1]


def test_ctrl_c_exits_130_with_the_resume_command(config, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("gradflow.sweep.runner.run_job", interrupted)
    assert main(["sweep", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again to resume" in err and "Traceback" not in err


def test_an_output_path_below_a_regular_file_exits_2_naming_it(config, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["sweep", str(config), "--out", str(tmp_path / "afile" / "out"), "--quiet"]) == 2
    assert str(tmp_path / "afile") in _error_line(capsys)


def test_malformed_slurm_variables_exit_2(config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "three")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert main(["sweep", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "SLURM array variables" in _error_line(capsys)


def test_distributed_without_a_coordinator_exits_2_saying_what_to_give(config, tmp_path, capsys):
    assert main(["sweep", str(config), "--out", str(tmp_path / "out"), "--quiet", "--distributed"]) == 2
    assert "--coordinator HOST:PORT" in _error_line(capsys)


def test_zero_byte_and_single_array_files_are_named_not_tracebacks(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz: the data file is empty"):
        read_npz(empty, what="data")
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros((2, 3)))  # a .npy under an .npz name
    with pytest.raises(ValueError, match=r"a single array of shape \(2, 3\), not an .npz archive"):
        read_npz(single, what="data")
    torn = tmp_path / "torn.npz"
    np.savez(torn, X=np.zeros((50, 4)))
    torn.write_bytes(torn.read_bytes()[:60])  # a truncated archive
    with pytest.raises(ValueError, match="torn.npz: not a readable .npz file"):
        read_npz(torn, what="data")


@pytest.mark.slow
def test_sigint_mid_sweep_exits_130_and_a_rerun_completes_the_same_store(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text(SLOW)
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli("sweep", str(config), "--out", str(out), "--quiet", "--no-plot"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    markers = wait_for_chunks(proc, out, 3)
    proc.send_signal(signal.SIGSTOP)  # frozen mid-sweep, whatever the machine's speed
    assert len(os.listdir(markers)) < 60, "the sweep finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)  # delivered when it continues
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "run the same command again to resume" in err and "Traceback" not in err
    resumed = subprocess.run(_cli("sweep", str(config), "--out", str(out), "--quiet", "--no-plot"), env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = tmp_path / "whole"
    assert subprocess.run(_cli("sweep", str(config), "--out", str(whole), "--quiet", "--no-plot"), env=_env(),
                          capture_output=True, text=True, timeout=300).returncode == 0
    _assert_same_store(out, whole)


def test_a_config_file_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes(SMALL.replace("[model]", "# température\n[model]").encode("latin-1"))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    line = _error_line(capsys)
    assert str(path) in line and "is not UTF-8 text" in line


def test_a_read_only_output_path_exits_2_with_one_line(config, tmp_path, monkeypatch, capsys):
    import errno

    def read_only(self):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr("gradflow.sweep.lease.WriterLease.__enter__", read_only)
    assert main(["sweep", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "Read-only file system" in _error_line(capsys)


@pytest.mark.slow
def test_a_distributed_peer_that_never_arrives_ends_the_wait_with_a_message(config, tmp_path):
    """JAX alone waits 300 s in silence, then aborts the process from C++ (exit 134, a stack trace)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    done = subprocess.run(_cli("sweep", str(config), "--out", str(tmp_path / "out"), "--quiet", "--distributed",
                               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0",
                               "--distributed-timeout", "3"), env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "waiting up to 3 s for every process to arrive" in done.stderr
    assert "not every process of the job arrived" in done.stderr and "Check failure" not in done.stderr
    assert time.monotonic() - started < 60


def test_an_unexpected_error_is_one_line_and_its_traceback_comes_on_request(config, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("gradflow.sweep.runner.run_job", broken)
    assert main(["sweep", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "unexpected error" in err and "ZeroDivisionError: a bug" in err and "Traceback" not in err
    monkeypatch.setenv("GRADFLOW_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["sweep", str(config), "--out", str(tmp_path / "out"), "--quiet"])
