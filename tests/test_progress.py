"""Progress reporting: throttled log lines with counts and ETA, a bar on a terminal, silence when disabled."""

import io
import re
import time
import types

import pytest

import gradflow.sweep.progress as gp
from gradflow.sweep.progress import LogProgress, progress


@pytest.fixture
def clock(monkeypatch):
    """A settable perf_counter for gradflow.sweep.progress (wall-clock strftime is kept)."""
    now = [100.0]
    monkeypatch.setattr(gp, "time", types.SimpleNamespace(perf_counter=lambda: now[0], strftime=time.strftime))
    return now


LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (?P<desc>.+): (?P<n>\d+)/(?P<total>\d+) (?P<unit>\w+)s, "
                  r"(?P<elapsed>[\d.]+)s elapsed, ETA (?P<eta>[\d.]+|nan)s(?: (?P<postfix>.*))?$")


def _lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        match = LINE.match(line)
        assert match, f"unexpected progress line {line!r}"
        out.append(match.groupdict())
    return out


def test_log_lines_are_throttled_and_carry_counts_and_eta(clock):
    file = io.StringIO()
    bar = LogProgress(5, desc="lag profiles", unit="chunk", every=10.0, file=file)
    for t, postfix in [(101.0, ""), (112.0, "40 variants/s"), (115.0, ""), (123.0, ""), (124.5, "")]:
        clock[0] = t
        if postfix:
            bar.set_postfix_str(postfix)
        bar.update()
    lines = _lines(file.getvalue())
    # t = 101: 1 s since the start, no line; 112: 12 s, a line; 115: 3 s since it, none; 123: 11 s, a line;
    # 124.5: the last update, always a line
    assert [(d["n"], d["total"], d["elapsed"], d["eta"]) for d in lines] == [
        ("2", "5", "12.0", "18.0"),  # 12 s for 2, 3 to go: 18 s
        ("4", "5", "23.0", "5.8"),  # 23 s for 4, 1 to go: 5.75 s
        ("5", "5", "24.5", "0.0"),
    ]
    assert all(d["desc"] == "lag profiles" and d["unit"] == "chunk" for d in lines)
    assert [d["postfix"] for d in lines] == ["40 variants/s"] * 3  # the postfix sticks until replaced


def test_update_by_several_and_a_line_at_the_end(clock):
    file = io.StringIO()
    with LogProgress(10, desc="d", unit="variant", every=1e9, file=file) as bar:
        clock[0] = 104.0
        bar.update(4)
        assert file.getvalue() == ""
        clock[0] = 110.0
        bar.update(6)
    (line,) = _lines(file.getvalue())
    fields = (line["n"], line["total"], line["unit"], line["elapsed"], line["eta"])
    assert fields == ("10", "10", "variant", "10.0", "0.0")
    assert line["postfix"] is None and not file.getvalue().endswith(" \n")


def test_log_progress_writes_to_stderr_by_default(capsys, clock):
    bar = LogProgress(1, desc="x", unit="chunk")
    clock[0] = 101.0
    bar.update()
    out, err = capsys.readouterr()
    assert out == "" and _lines(err)[0]["n"] == "1"


def test_progress_picks_log_lines_off_a_terminal_and_nothing_when_disabled(capsys, clock):
    bar = progress(3, desc="lag profiles")
    assert isinstance(bar, LogProgress) and (bar.total, bar.unit, bar.every) == (3, "chunk", 10.0)
    with progress(3, desc="lag profiles", enabled=False) as quiet:
        for _ in range(3):
            clock[0] += 60.0
            quiet.set_postfix_str("fast")
            quiet.update(1)
    assert capsys.readouterr() == ("", "")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_tqdm_bar_on_a_terminal(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress(2, desc="lag profiles") as bar:
        assert not isinstance(bar, LogProgress)
        bar.update(2)
    assert "lag profiles" in terminal.getvalue() and "2/2" in terminal.getvalue()
