"""Shared field rules: each turns one raw TOML value into a typed value, or raises :class:`ConfigError`.

A :class:`Rule` is called as ``rule(where, raw)``, ``where`` naming the key (``"[grid].seed"``), so
every message names the table and the key. Scalar rules take one value; :func:`axis` turns a rule
into one for a *setting that may be swept*: a value, a list, or a range ``{start, stop, num[, log]}``
(``numpy.linspace``; ``log = true``: ``numpy.geomspace``; at most :data:`MAX_RANGE_NUM` values), always
returned as a non-empty tuple of distinct values (every value is a point of the results).

Example:
  >>> axis(integers())("[model].hidden_size", [16, 32])
  (16, 32)
  >>> axis(numbers("finite"))("[grid].forget_bias", {"start": -1, "stop": 1, "num": 3})
  (-1.0, 0.0, 1.0)
  >>> choice(("tanh", "relu"))("[model].activation", "gelu")
  Traceback (most recent call last):
  ...
  gradflow.config.fields.ConfigError: [model].activation: 'gelu' is not one of ['relu', 'tanh']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection
from typing import Any

import numpy as np

#: Seeds are uint32: JAX wraps larger ones silently.
MAX_SEED = 2**32 - 1

#: Most values one range may give (checked before any is made).
MAX_RANGE_NUM = 10**6

#: Significant digits a range's values are rounded to, so that a value the config names holds that
#: decimal exactly (``{start = 0.25, stop = 4.0, num = 13, log = true}`` holds 2.0, not 1.9999999999999998).
RANGE_DIGITS = 12


class ConfigError(ValueError):
    """A config that cannot run; the message names the table and the key."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """A field rule.

    Attributes:
      type: what it takes, in words (the reference table prints it).
      one: ``(where, value) -> typed value`` for a single value.
      many: ``(where, values) -> tuple`` for the values of an :func:`axis`; each through ``one`` if None.
      is_axis: whether it takes a value, a list or a range (a setting that may be swept).
    """

    type: str
    one: Callable[[str, Any], Any]
    many: Callable[[str, list], tuple] | None = None
    is_axis: bool = False

    def __call__(self, where: str, raw: Any) -> Any:
        return self.one(where, raw)

    def each(self, where: str, values: list) -> tuple:
        """``values`` through this rule (a list of single values)."""
        return self.many(where, values) if self.many is not None else tuple(self.one(where, v) for v in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integers(minimum: int = 1, maximum: int | None = None) -> Rule:
    """Integers in ``[minimum, maximum]`` (no upper bound if None); booleans and floats are refused."""
    bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"

    def one(where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            raise ConfigError(f"{where} must hold integers {bound}; got {value!r}")
        return value

    return Rule(f"integer {bound}", one)


#: A seed: an integer in [0, 2**32 - 1].
SEED = integers(0, MAX_SEED)


def _positive_integer(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a positive integer; got {value!r}")
    return value


#: One positive integer (a size that is never swept).
POSITIVE_INTEGER = Rule("integer >= 1", _positive_integer)

#: name -> (test, what one value must be, what every value of a list must be)
_NUMBER_KINDS: dict[str, tuple[Callable[[float], bool], str, str]] = {
    "finite": (math.isfinite, "a finite number", "finite numbers"),
    "positive": (lambda v: 0 < v < math.inf, "a positive number", "positive numbers"),
    "nonnegative": (lambda v: 0 <= v < math.inf, "a number >= 0", "numbers >= 0"),
    "fraction": (lambda v: 0 < v < 1, "a fraction in (0, 1)", "fractions in (0, 1)"),
}


def numbers(kind: str, *, unit: str = "") -> Rule:
    """Floats of one ``kind``: ``finite``, ``positive`` (finite, > 0), ``nonnegative`` (finite, >= 0) or
    ``fraction`` (in (0, 1)); ``unit`` is named in messages (``"MiB"``). Integers become floats."""
    test, single, plural = _NUMBER_KINDS[kind]
    suffix = f" of {unit}" if unit else ""

    def one(where: str, value: Any) -> float:
        if not (_is_number(value) and test(value)):
            raise ConfigError(f"{where} must be {single}{suffix}; got {value!r}")
        return float(value)

    def many(where: str, values: list) -> tuple[float, ...]:
        if not all(_is_number(v) and test(v) for v in values):
            raise ConfigError(f"{where} must hold {plural}{suffix}; got {values}")
        return tuple(float(v) for v in values)  # 1 and 1.0 are the same setting (and hash)

    return Rule(single + suffix, one, many)


def choice(options: Collection[str]) -> Rule:
    """One of ``options`` (names)."""
    allowed = sorted(options)

    def one(where: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {allowed}")
        return value

    return Rule("one of " + ", ".join(f'"{o}"' for o in allowed), one)


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string; got {value!r}")
    return value


#: A string (a file path, a name).
TEXT = Rule("string", _text)


def _chunk_size(where: str, value: Any) -> int | str:
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f'{where} must be a positive integer or "auto"; got {value!r}')
    return value


#: Variants per work chunk: a positive integer or ``"auto"``.
CHUNK_SIZE = Rule('integer >= 1 or "auto"', _chunk_size)


def values(where: str, raw: Any) -> list:
    """A scalar, a list, or a ``{start, stop, num[, log]}`` range as a non-empty list.

    A range's values are rounded to :data:`RANGE_DIGITS` significant digits, and are integers where
    they are whole numbers (``{start = 0, stop = 6, num = 4}``:
    0, 2, 4, 6), so ranges of seeds and sizes need no conversion.
    """
    if isinstance(raw, dict):
        extra = sorted(set(raw) - {"start", "stop", "num", "log"})
        missing = sorted({"start", "stop", "num"} - set(raw))
        if extra or missing:
            raise ConfigError(f"{where}: a range takes start, stop, num (and optional log); "
                              f"{'unknown ' + str(extra) if extra else 'missing ' + str(missing)}")
        num = raw["num"]
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ConfigError(f"{where}.num must be a positive integer; got {num!r}")
        if num > MAX_RANGE_NUM:
            raise ConfigError(f"{where}.num must be at most {MAX_RANGE_NUM:,} (the values of one range); got {num:,}")
        start, stop = raw["start"], raw["stop"]
        for key, value in (("start", start), ("stop", stop)):
            if not _is_number(value):
                raise ConfigError(f"{where}.{key} must be a number; got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{where}.{key} must be a finite number; got {value!r}")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{where}.log must be true or false; got {log!r}")
        if log and (start <= 0 or stop <= 0):
            raise ConfigError(f"{where}: a log range needs start > 0 and stop > 0; got {start}, {stop}")
        spaced = [float(f"{v:.{RANGE_DIGITS}g}") for v in (np.geomspace if log else np.linspace)(start, stop, num)]
        return [int(v) if v.is_integer() else v for v in spaced]
    listed = raw if isinstance(raw, list) else [raw]
    if not listed:
        raise ConfigError(f"{where} is an empty list; give at least one value")
    return listed


def axis(rule: Rule) -> Rule:
    """``rule`` for a setting that may be swept: a value, a list or a range, as a tuple of distinct values.

    A repeated value (after the rule: ``1`` and ``1.0`` are one number) is an error: it would be
    computed twice and make the results' coordinate ambiguous.
    """

    def one(where: str, raw: Any) -> tuple:
        out = rule.each(where, values(where, raw))
        distinct = len(set(out))
        if distinct != len(out):
            if len(out) <= 10:
                raise ConfigError(f"{where} repeats a value: {list(out)}")
            seen: set = set()
            repeated = [v for v in out if v in seen or seen.add(v)]
            raise ConfigError(f"{where} repeats values ({len(out):,} values, {distinct:,} distinct), "
                              f"e.g. {repeated[:3]}")
        return out

    return Rule(f"{rule.type}, or a list", one, is_axis=True)
