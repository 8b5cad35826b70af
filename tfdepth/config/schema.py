"""Typed, strict conversion of plain data (YAML) into frozen config dataclasses.

Every key is checked: an unknown key is an error that names the key and suggests the closest valid one; values are
type-checked against the dataclass annotations (lists become tuples, integers become floats where a float is
expected). A section may validate its values in ``__post_init__`` by raising :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

__all__ = ["ConfigError", "build_section", "config_to_dict", "check_choice", "check_positive"]


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key, the file and the fix."""


def check_choice(value, choices, key):
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``; the message names ``key``."""
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}.{hint}")


def check_positive(value, key, *, allow_zero=False, fix=""):
    """Raise :class:`ConfigError` unless ``value`` > 0 (or >= 0 with ``allow_zero``)."""
    if value is None:
        return
    bad = value < 0 if allow_zero else value <= 0
    if bad:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key} must be {bound}, got {value!r}{'; ' + fix if fix else ''}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert it (lists to tuples, ints to floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return build_section(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {tp!r}")  # a bug in this module, not in the file


def build_section(cls: type, values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping; ``where`` is the dotted section name used in messages."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            prefix = f"{where}." if where and where != "<root>" else ""
            raise ConfigError(
                f"unknown key {prefix}{key!r}.{hint} Valid keys{' of ' + where if where != '<root>' else ''}: "
                f"{', '.join(names)}"
            )
        sub_where = key if where == "<root>" else f"{where}.{key}"
        kwargs[key] = _coerce(value, hints[key], sub_where)
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict:
    """Nested plain data (tuples become lists) suitable for YAML."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(config)
