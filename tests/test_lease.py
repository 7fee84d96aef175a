"""Writer leases: a process of another config never replaces or mixes into a store that a live process writes.

The bug this guards (issue 10): a writer of config A ran; a second process started --overwrite with config B on
the same directory, then a --shard writer of B finished: the store ended labelled B and held A's numbers.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from gradflow.config import parse_config
from gradflow.profiles.job import run_sweep
from gradflow.sweep.layout import WRITERS_DIR
from gradflow.sweep.lease import StoreBusyError, WriterLease, read_leases
from test_store import SLOW, SMALL, _assert_same_store, _cli, _env, wait_for_chunks

OTHER = SMALL.replace("seq_len = 20", "seq_len = 20\ninput_seed = 1")  # same grid, other probe inputs


@pytest.fixture(scope="module")
def reference(small_reference):
    return small_reference


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def _lease(out, config_hash: str, pid: int, host: str | None = None):
    folder = out / WRITERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{host or socket.gethostname()}-{pid}-{'e' * 32}.json"
    path.write_text(json.dumps({"config_hash": config_hash, "host": host or socket.gethostname(), "pid": pid,
                                "started": "2026-11-28T10:00:00+0000"}))
    return path


def _hash(text: str) -> str:
    from gradflow.profiles.job import profile_job

    return profile_job(parse_config(text)).config_hash()


def test_a_live_writer_of_another_config_refuses_overwrite_and_the_store_is_untouched(tmp_path, reference, sleeper):
    out = tmp_path / "out"
    run_sweep(parse_config(SMALL), out, show_progress=False)
    _lease(out, _hash(SMALL), sleeper.pid)  # a live writer of SMALL
    with pytest.raises(StoreBusyError, match=f"being written by a sweep of another config: process {sleeper.pid}"):
        run_sweep(parse_config(OTHER), out, overwrite=True, show_progress=False)
    _assert_same_store(out, reference)
    assert [lease.pid for lease in read_leases(out)] == [sleeper.pid]  # the refused process withdrew its lease


def test_writers_of_one_config_share_the_store(tmp_path, reference, sleeper):
    out = tmp_path / "out"
    _lease(out, _hash(SMALL), sleeper.pid)  # another shard of the same config
    report = run_sweep(parse_config(SMALL), out, show_progress=False)
    assert report.complete
    _assert_same_store(out, reference)


def test_the_lease_of_a_killed_writer_is_stale_and_removed(tmp_path, reference):
    out = tmp_path / "out"
    run_sweep(parse_config(SMALL), out, show_progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = _lease(out, _hash(SMALL), int(dead.stdout))
    report = run_sweep(parse_config(OTHER), out, overwrite=True, show_progress=False)
    assert report.complete and not stale.exists()
    assert not (out / WRITERS_DIR).exists()  # the last writer out removes the folder


def test_another_hosts_lease_is_live_while_its_heartbeat_is_recent(tmp_path):
    out = tmp_path / "out"
    lease = _lease(out, "f" * 64, 12345, host="node-elsewhere")
    with pytest.raises(StoreBusyError, match="process 12345 on node-elsewhere"):
        with WriterLease(out, "a" * 64):
            pass
    os.utime(lease, (time.time() - 3600, time.time() - 3600))  # an hour without a heartbeat: stale
    with WriterLease(out, "a" * 64):
        assert not lease.exists()


def test_break_lease_removes_the_leases_of_other_configs(tmp_path, reference, sleeper):
    out = tmp_path / "out"
    _lease(out, "f" * 64, sleeper.pid)
    report = run_sweep(parse_config(SMALL), out, break_lease=True, show_progress=False)
    assert report.complete and read_leases(out) == []


@pytest.mark.slow
def test_the_reported_race_cannot_mix_configs(tmp_path):
    """The repro of the issue with real processes: A writes; B --overwrite --shard 0/2 is refused; after A,
    B --shard 1/2 without --overwrite is refused too; the store holds A, labelled A. A is frozen (SIGSTOP) while
    B tries, so the race does not depend on timing: a stopped process is alive and its lease holds."""
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(SLOW)
    b.write_text(SLOW.replace("seq_len = 1500", "seq_len = 1500\ninput_seed = 1"))
    out = tmp_path / "out"
    writer = subprocess.Popen(_cli("sweep", str(a), "--out", str(out), "--quiet", "--no-plot"), env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        markers = wait_for_chunks(writer, out, 2)
        writer.send_signal(signal.SIGSTOP)
        assert len(os.listdir(markers)) < 60, "A finished before it could be frozen"
        other = subprocess.run(_cli("sweep", str(b), "--out", str(out), "--overwrite", "--shard", "0/2", "--quiet",
                                    "--no-plot"), env=_env(), capture_output=True, text=True, timeout=300)
        assert other.returncode == 2 and "being written by a sweep of another config" in other.stderr, other.stderr
        writer.send_signal(signal.SIGCONT)
        assert writer.wait(timeout=600) == 0, writer.stderr.read()[-3000:]
    finally:
        if writer.poll() is None:
            writer.send_signal(signal.SIGCONT)
            writer.kill()
            writer.wait()
        writer.stderr.close()
    late = subprocess.run(_cli("sweep", str(b), "--out", str(out), "--shard", "1/2", "--quiet", "--no-plot"),
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert late.returncode == 2 and "pass --overwrite" in late.stderr, late.stderr
    whole = tmp_path / "whole"
    run_sweep(parse_config(SLOW), whole, show_progress=False)
    _assert_same_store(out, whole)


def test_sigkill_of_a_writer_leaves_a_lease_that_does_not_block(tmp_path, reference):
    out = tmp_path / "out"
    code = (f"import sys; sys.path.insert(0, {str(os.path.dirname(__file__))!r}); import time\n"
            "from gradflow.sweep.lease import WriterLease\n"
            f"with WriterLease({str(out)!r}, 'f' * 64):\n    print('held', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(StoreBusyError):
        run_sweep(parse_config(SMALL), out, show_progress=False)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert run_sweep(parse_config(SMALL), out, show_progress=False).complete
    _assert_same_store(out, reference)
