"""A parsed YAML document as the configuration's models (:mod:`archiver.config.models`), by cattrs.

Every key of every section is structured and checked before cattrs gives up, so that a file's
problems are all reported at once (``config.load`` turns them into ``At 'key': what`` lines).
Values are taken as YAML writes them, or as text (``${VAR}`` expands to text): ``yes``/``"yes"``
for a boolean, ``8``/``"8"`` for a number; but a number where text belongs is refused, as YAML
reads an unquoted ``0123`` as 83, which would become a wrong credential.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from archiver.config import checks
from archiver.config.models import ConfigFile, ScopeRules, Secret, Size
from archiver.core.quantities import parse_duration, parse_size


class Invalid(ValueError):
    """A value the configuration cannot take: *message* says why, *value* is what was written."""

    def __init__(self, message: str, value: object) -> None:
        super().__init__(message)
        self.value = value


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _text(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text (quote it in YAML)")
    return value


def _secret(value: object, _: object) -> Secret:
    return Secret(_text(value, None))


def _whole(value: object, _: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ValueError("must be a whole number")


def _boolean(value: object, _: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    raise ValueError("must be true or false")


def _path(value: object, _: object) -> Path:
    return Path(_text(value, None))


def _literal(value: object, kind: Any) -> object:
    if value not in get_args(kind):
        raise ValueError(f"must be one of {', '.join(repr(choice) for choice in get_args(kind))}")
    return value


def _field_hook(converter: cattrs.Converter, attribute: attrs.Attribute[Any]) -> Callable[[Any, Any], Any]:
    """Structures one field: a list where the type says one (cattrs would take a string's
    letters), then the field's own check; what is wrong is raised as Invalid, carrying what was
    written."""
    kind: Any = attribute.type  # resolved by attrs.resolve_types
    optional = type(None) in get_args(kind)
    inner = next((arg for arg in get_args(kind) if arg is not type(None)), kind) if optional else kind
    wants_list = get_origin(inner) is tuple
    check = attribute.metadata.get("check")

    def hook(value: Any, _: Any) -> Any:
        if wants_list and not isinstance(value, list | tuple) and not (value is None and optional):
            raise Invalid("must be a list", value)
        try:
            out = converter.structure(value, kind)
            return check(out) if check else out
        except (ValueError, TypeError) as exc:
            raise Invalid(str(exc), value) from None

    return hook


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind, hook in ((str, _text), (int, _whole), (bool, _boolean), (Path, _path), (Secret, _secret)):
        converter.register_structure_hook(kind, hook)
    converter.register_structure_hook(timedelta, lambda value, _: parse_duration(value))
    converter.register_structure_hook(Size, lambda value, _: Size(parse_size(value)))
    converter.register_structure_hook(ScopeRules, lambda value, _: ScopeRules(checks.scopes(value) or ()))
    converter.register_structure_hook_func(lambda kind: get_origin(kind) is Literal, _literal)  # type: ignore[comparison-overlap]

    def sections(kind: Any) -> Callable[[Any, Any], Any]:
        attrs.resolve_types(kind)
        hooks: dict[str, Any] = {
            a.name: override(struct_hook=_field_hook(converter, a), rename=a.metadata.get("key"))
            for a in attrs.fields(kind)
        }
        structure_fields = make_dict_structure_fn(kind, converter, **hooks)

        def section(value: Any, _: Any) -> Any:
            if not isinstance(value, dict):
                raise ValueError("must be a mapping of keys")
            return structure_fields(value, kind)

        return section

    converter.register_structure_hook_factory(attrs.has, sections)
    return converter


def structure(document: dict[str, Any]) -> ConfigFile:
    """*document* as a ConfigFile. Raises cattrs' ClassValidationError, a group holding every
    problem: its leaves are Invalid, KeyError (a key is missing), ForbiddenExtraKeysError
    (unknown keys) or a section's own ValueError, each noted with where it is."""
    return _converter().structure(document, ConfigFile)
