"""Writer leases: processes of one config share a store; a process of another config is refused while they live.

Every process that writes ``DIR`` (shards, array tasks and ``jax.distributed`` processes alike) holds a lease:
``DIR/.writers/{host}-{pid}-{uuid}.json`` (:class:`gradflow.sweep.layout.OutputLayout`) naming its config hash, host, process and start time, touched by a
heartbeat every :data:`HEARTBEAT_S` seconds and removed when the process ends. A process first writes its own
lease, then reads the others': if a live one names another config, it withdraws its lease and refuses
(:class:`StoreBusyError`) before touching the store, ``--overwrite`` included. Two processes of different
configs starting at once both see each other and both refuse; neither can replace the store under the other.

A lease is live while its process runs (same host: the process id is asked) or, for another host, while its
heartbeat is younger than :data:`STALE_S`. A killed process leaves a stale lease, which is ignored and removed;
``break_leases`` (``--break-lease``) removes leases a user knows to be dead (a host that crashed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from gradflow.sweep.layout import OutputLayout
from gradflow.sweep.results import owner_tag

#: Seconds between heartbeats of a live lease.
HEARTBEAT_S = 30.0
#: A lease of another host whose heartbeat is older than this is stale.
STALE_S = 600.0


class StoreBusyError(ValueError):
    """``DIR`` is being written by a live process of another config."""


@dataclasses.dataclass(frozen=True)
class Lease:
    """One writer's lease, as read from its file."""

    path: Path
    config_hash: str
    host: str
    pid: int
    started: str

    def live(self) -> bool:
        """The process runs (this host), or its heartbeat is recent (another host)."""
        if self.host == socket.gethostname():
            return process_alive(self.pid)
        try:
            return time.time() - self.path.stat().st_mtime < STALE_S
        except FileNotFoundError:
            return False

    def describe(self) -> str:
        return f"process {self.pid} on {self.host} (config {self.config_hash[:12]}, since {self.started})"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (one owned by another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_leases(directory: str | Path) -> list[Lease]:
    """Every readable lease in ``DIR/.writers`` (a torn or vanished file is skipped)."""
    out = []
    folder = OutputLayout(directory).writers
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            record = json.loads(path.read_text())
            out.append(Lease(path, str(record["config_hash"]), str(record["host"]), int(record["pid"]),
                             str(record["started"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def break_leases(directory: str | Path, *, keep_hash: str | None = None) -> list[Lease]:
    """Remove every lease (but those of ``keep_hash``): the user asserts their processes are gone."""
    removed = []
    for lease in read_leases(directory):
        if lease.config_hash != keep_hash:
            lease.path.unlink(missing_ok=True)
            removed.append(lease)
    return removed


class WriterLease:
    """This process's lease on ``DIR`` for a config: a context manager (acquire, heartbeat, release).

    Raises:
      StoreBusyError: on entry, if a live process of another config holds a lease on ``DIR``.
    """

    def __init__(self, directory: str | Path, config_hash: str):
        self.directory = Path(directory)
        self.config_hash = config_hash
        host = socket.gethostname()
        self.path = OutputLayout(directory).writers / f"{owner_tag()}-{uuid.uuid4().hex}.json"
        self.record = {"config_hash": config_hash, "host": host, "pid": os.getpid(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WriterLease:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record))
        os.replace(tmp, self.path)  # the lease appears whole
        others = [lease for lease in read_leases(self.directory) if lease.path != self.path]
        for lease in others:
            if not lease.live():
                lease.path.unlink(missing_ok=True)  # a killed writer's: stale
            elif lease.config_hash != self.config_hash:
                self.path.unlink(missing_ok=True)
                raise StoreBusyError(
                    f"{str(self.directory)!r} is being written by a sweep of another config: {lease.describe()}; "
                    "wait for it to finish or choose another --out (if that process is gone for good, rerun with "
                    "--break-lease)")
        self._thread = threading.Thread(target=self._beat, name="gradflow-lease", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except FileNotFoundError:  # broken by a user: write it again
                self.path.write_text(json.dumps(self.record))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()  # the last writer out removes the folder
        except OSError:
            pass
