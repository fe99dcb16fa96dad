"""Read the YAML configuration: expand it, read secret files, validate, and say what is wrong.

Every problem in a file is reported at once, each as ``At 'dotted.key': what is wrong``.
``${VAR}`` expands from the environment in any string (``$$`` is a literal ``$``), and
``api_key_file`` / ``api_secret_file`` read a secret from a file (systemd's ``LoadCredential=``
puts them under ``$CREDENTIALS_DIRECTORY``).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml
from cattrs.errors import AttributeValidationNote, ForbiddenExtraKeysError, IterableValidationNote

from archiver.config.models import ONE_OR_MANY, Config
from archiver.config.structure import Invalid, structure
from archiver.errors import ConfigError

SYSTEMD_CREDENTIALS = "/run/credentials/"  # where systemd hands a unit its LoadCredential= files
_FILE_SECRETS = ("api_key", "api_secret")  # may also come from source.<name>_file
_SECRET_KEYS = frozenset({*_FILE_SECRETS, "ping_url"})  # values never echoed in a problem
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")  # $$, ${VAR}, ${VAR:-default}


def load_configs(
    path: Path, environ: Mapping[str, str] | None = None, *, read_only: bool = False
) -> tuple[Config, ...]:
    """Read *path*: one Config per source. Raises ConfigError listing every problem, each naming its key.

    *read_only*: for the commands that read the bucket alone (``find``, ``show``, ``export``,
    ``browse``, ``verify``): the PBX's credentials are not read and may be absent, and so may
    the whole ``source:`` section (its ``timezone`` still says how dates are read).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}"], source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path} is not UTF-8 text"], source=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"], source=str(path)) from None
    return parse_configs(
        data,
        environ=os.environ if environ is None else environ,
        source=str(path),
        base_dir=path.parent,
        read_only=read_only,
    )


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read a file with a single source."""
    return _only(load_configs(path, environ), str(path))


def parse_config(
    data: object,
    *,
    environ: Mapping[str, str],
    source: str = "configuration",
    base_dir: Path | None = None,
) -> Config:
    """Validate an already-parsed YAML document with a single source; see :func:`parse_configs`."""
    return _only(parse_configs(data, environ=environ, source=source, base_dir=base_dir), source)


def _only(configs: tuple[Config, ...], source: str) -> Config:
    if len(configs) != 1:
        raise ConfigError(["this needs a file with one source:, not a sources: list"], source=source)
    return configs[0]


def parse_configs(
    data: object,
    *,
    environ: Mapping[str, str],
    source: str = "configuration",
    base_dir: Path | None = None,
    read_only: bool = False,
) -> tuple[Config, ...]:
    """Validate an already-parsed YAML document; see :func:`load_configs`."""
    if not isinstance(data, dict):
        raise ConfigError(["the file must be a mapping with source: and storage: sections"], source=source)
    problems: list[str] = []
    if read_only:
        data = _without_credentials(data)
    expanded = _expand(data, environ, (), problems)
    assert isinstance(expanded, dict)
    _read_secret_files(expanded, problems)
    if base_dir is not None:
        _resolve_paths(expanded, base_dir)
    if ("source" in expanded) == ("sources" in expanded):
        # Said here, not only by the model, so that it comes with the file's other problems.
        problems.append(ONE_OR_MANY)
        expanded = {k: v for k, v in expanded.items() if k != "sources"} if "source" in expanded else expanded
    try:
        config = structure(expanded)
    except ExceptionGroup as exc:  # cattrs' ClassValidationError: every problem, each with its place
        found = (p for loc, error in _leaves(exc, ()) for p in _describe(loc, error))
        said = ONE_OR_MANY in problems  # not twice; but `source: null` is caught by the model alone
        problems.extend(p for p in found if not (said and p.endswith(ONE_OR_MANY)))
        config = None
    if problems or config is None:
        raise ConfigError(problems, source=source)
    return config.configs()


def _expand(node: Any, environ: Mapping[str, str], path: tuple[str | int, ...], problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _expand(v, environ, (*path, str(k)), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, environ, (*path, i), problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name is None:
            return "$"
        if environ.get(name):
            return environ[name]
        if default is not None:  # as in the shell: unset or empty takes the default
            return default
        if name not in environ:
            problems.append(f"At {_dotted(path)!r}: environment variable {name} is not set")
            return ""
        return environ[name]

    return _VAR.sub(substitute, node)


def _source_sections(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``source:`` and each item of ``sources:`` that is a mapping, with where it is."""
    sections = [("source", data.get("source"))]
    if isinstance(data.get("sources"), list):
        sections += [(f"sources[{i}]", item) for i, item in enumerate(data["sources"])]
    return [(where, section) for where, section in sections if isinstance(section, dict)]


def _without_credentials(data: dict[str, Any]) -> dict[str, Any]:
    """*data* for a command that never calls the PBX: its credentials (values, files, ``${VAR}``s
    that may be unset where the auditor works) are replaced by empty ones, never read, and a file
    without ``source:`` gets the defaults (only the time zone matters then)."""
    data = copy.deepcopy(data)
    if "source" not in data and "sources" not in data:
        data["source"] = {}
    for _, section in _source_sections(data):
        for name in _FILE_SECRETS:
            section.pop(f"{name}_file", None)
            section[name] = ""
    return data


def _read_secret_files(data: dict[str, Any], problems: list[str]) -> None:
    for where, section in _source_sections(data):
        _read_secret_file(where, section, problems)


def _read_secret_file(where: str, section: dict[str, Any], problems: list[str]) -> None:
    for name in _FILE_SECRETS:
        file_key = f"{name}_file"
        if file_key not in section:
            continue
        file_name = section.pop(file_key)
        if name in section:
            problems.append(f"At '{where}.{file_key}': set either {where}.{name} or {where}.{file_key}, not both")
            continue
        try:
            section[name] = Path(str(file_name)).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(f"At '{where}.{file_key}': cannot read {file_name}: {reason}{_credential_hint(file_name)}")
            section[name] = ""


def _credential_hint(file_name: object) -> str:
    """What to look at when a secret systemd was to hand the service is not there: the units load
    /etc/archiver as credentials, so the file is missing from that folder (a package install
    that was not yet given its secrets)."""
    if not str(file_name).startswith(SYSTEMD_CREDENTIALS):
        return ""
    return (
        " (a systemd credential: put the file in the folder the unit's LoadCredential= names, /etc/archiver as shipped)"
    )


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    """The local paths a file may give relative to its own folder: the ledger, the results folder."""
    for name, key in (("state", "path"), ("metrics", "textfile_dir")):
        section = data.get(name)
        if isinstance(section, dict) and isinstance(section.get(key), str):
            path = Path(section[key])
            if not path.is_absolute():
                section[key] = str(base_dir / path)


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _leaves(error: BaseException, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], BaseException]]:
    """The problems in cattrs' group of groups, each with the key path cattrs noted on the way."""
    if not isinstance(error, BaseExceptionGroup):
        yield loc, error
        return
    for inner in error.exceptions:
        step: tuple[str | int, ...] = ()
        for note in reversed(getattr(inner, "__notes__", ())):
            if isinstance(note, AttributeValidationNote | IterableValidationNote):
                # A key that is a Python keyword (``from``) is a field with a trailing underscore.
                step = (note.name.rstrip("_"),) if isinstance(note, AttributeValidationNote) else (note.index,)
                break
        yield from _leaves(inner, (*loc, *step))


def _describe(loc: tuple[str | int, ...], error: BaseException) -> list[str]:
    key = _dotted(loc) or "(top level)"
    if isinstance(error, ForbiddenExtraKeysError):
        import difflib  # noqa: PLC0415  (only a file with a misspelt key needs it)

        known = sorted(a.metadata.get("key", a.name) for a in attrs.fields(error.cl))
        found = []
        for extra in sorted(error.extra_fields):
            guess = difflib.get_close_matches(extra, known, n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else f" (known keys: {', '.join(known)})"
            found.append(f"At {_dotted((*loc, extra))!r}: unknown key{hint}")
        return found
    if isinstance(error, KeyError):
        extra = f" (or set {key}_file)" if loc and loc[-1] in _FILE_SECRETS else ""
        return [f"At {key!r}: required{extra}"]
    message = str(error)
    value = error.value if isinstance(error, Invalid) else None
    secret = any(p in _SECRET_KEYS for p in loc)
    if not secret and isinstance(value, str | int | float) and "got" not in message:
        message += f" (got {value!r})"
    return [f"At {key!r}: {message}"]
