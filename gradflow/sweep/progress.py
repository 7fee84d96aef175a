"""Progress reporting: a tqdm bar on a terminal, plain timestamped log lines in batch logs."""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


class LogProgress:
    """A tqdm-like counter that prints one line at most every ``every`` seconds (and at the end)."""

    def __init__(self, total: int, *, desc: str, unit: str, every: float = 10.0, file=None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.file = file or sys.stderr
        self.n = 0
        self.start = self._last = time.perf_counter()
        self.postfix = ""

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self.every or self.n >= self.total:
            self._last = now
            elapsed = now - self.start
            eta = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
            print(
                f"[{time.strftime('%H:%M:%S')}] {self.desc}: {self.n}/{self.total} {self.unit}s, "
                f"{elapsed:.1f}s elapsed, ETA {eta:.1f}s {self.postfix}".rstrip(),
                file=self.file,
                flush=True,
            )

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(total: int, *, desc: str, unit: str = "chunk", enabled: bool = True):
    """A progress bar when stderr is a terminal, log lines otherwise, nothing when disabled."""
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    return LogProgress(total, desc=desc, unit=unit)
