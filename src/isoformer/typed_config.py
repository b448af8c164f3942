"""Typed dataclasses from plain values (YAML, JSON, command-line strings) and back.

Shared by the run configs (`isoformer.model.config`) and the simulation's rule family
(`isoformer.data.rule_family`): every value is converted by its field's type (`Literal` choices,
optionals, lists, tuples, nested dataclasses), and a wrong name or value is an error naming where.

A union of dataclasses that each have a one-value `kind: Literal[...]` field is a tagged union: a
mapping becomes the dataclass its `kind` names (the union's first when it names none), e.g. the
aggregation configs `CrossAttentionConfig | PerceiverConfig | ...`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

import yaml

from isoformer.errors import IsoformerError

TAG = "kind"  # the field a tagged union's dataclasses are told apart by
_NONE_WORDS = {"none", "null", "~", ""}
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` (a YAML value or a command-line string) as type `hint`; errors name `where`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return yaml.safe_load(value) if isinstance(value, str) else value
    if origin is Literal:
        if value not in args:
            raise IsoformerError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        optional = type(None) in args
        is_none_word = isinstance(value, str) and value.lower() in _NONE_WORDS
        if optional and (value is None or is_none_word):
            return None
        arms = tagged_arms(hint)
        if arms is not None:
            return from_tagged(arms, value, where)
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arm, where)
            except IsoformerError as error:
                errors.append(str(error))
        raise IsoformerError(errors[0])
    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value, where)
    if origin in (list, tuple):
        items = value
        if isinstance(value, str):
            items = [s.strip() for s in value.split(",") if s.strip()]
        if not isinstance(items, (list, tuple)):
            raise IsoformerError(f"{where}: expected a list, got {value!r}")
        if origin is tuple:
            if len(items) != len(args):
                raise IsoformerError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(coerce(v, a, f"{where}[{i}]")
                         for i, (v, a) in enumerate(zip(items, args)))
        return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(items)]
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise IsoformerError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        if isinstance(value, bool):
            return value
    elif hint in (int, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if hint is int and value != int(value):
                raise IsoformerError(f"{where}: expected an integer, got {value!r}")
            return hint(value)
        if isinstance(value, str):
            try:
                return hint(float(value)) if hint is int and "e" in value.lower() else hint(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    raise IsoformerError(f"{where}: expected {_type_name(hint)}, got {value!r}")


def tagged_arms(hint: Any) -> dict[str, type] | None:
    """kind -> dataclass, in the union's order, when `hint` is a tagged union (a union, None
    allowed, of dataclasses each with a `kind: Literal["one value"]` field); otherwise None."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return None
    arms: dict[str, type] = {}
    for arm in typing.get_args(hint):
        if arm is type(None):
            continue
        if not dataclasses.is_dataclass(arm):
            return None
        tag = field_hints(arm).get(TAG)
        if typing.get_origin(tag) is not Literal or len(typing.get_args(tag)) != 1:
            return None
        arms[typing.get_args(tag)[0]] = arm
    return arms or None


def from_tagged(arms: dict[str, type], value: Any, where: str) -> Any:
    """The dataclass of `arms` that the mapping's `kind` names (the first arm without one)."""
    if isinstance(value, tuple(arms.values())):
        value = to_plain(value)
    if not isinstance(value, dict):
        raise IsoformerError(f"{where or 'config'}: expected a mapping, got {value!r}")
    kind = value.get(TAG, next(iter(arms)))
    prefix = f"{where}." if where else ""
    if kind not in arms:
        raise IsoformerError(f"{prefix}{TAG}: {kind!r} is not one of {', '.join(arms)}")
    hints = field_hints(arms[kind])
    unknown = [key for key in value if key not in hints]
    if unknown:
        raise IsoformerError(
            f"{where or 'config'}: kind {kind} has no field {unknown[0]!r} (valid: "
            f"{', '.join(hints)})"
        )
    return from_plain(arms[kind], value, where)


def field_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_plain(cls: type, data: Any, where: str) -> Any:
    """Dataclass `cls` from a mapping, each field converted by its type; unknown keys are errors."""
    if isinstance(data, cls):
        data = to_plain(data)
    if not isinstance(data, dict):
        raise IsoformerError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = field_hints(cls)
    unknown = [key for key in data if key not in hints]
    if unknown:
        raise IsoformerError(
            f"{where or 'config'}: unknown field {unknown[0]!r} (valid: {', '.join(hints)})"
        )
    prefix = f"{where}." if where else ""
    values = {key: coerce(value, hints[key], prefix + key) for key, value in data.items()}
    try:
        return cls(**values)
    except TypeError as error:  # a required field is missing
        raise IsoformerError(f"{where or 'config'}: {error}") from None


def to_plain(value: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists: what YAML and JSON can hold."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    return value


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the leaves where two nested plain dicts differ (a key absent on one side
    counts), e.g. ["training.lr", "model.encoders.dna.hidden_layer"]."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [name for key in sorted(set(old) | set(new))
                for name in differing_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]
