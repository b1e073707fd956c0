"""Settings: ``[tool.zklint]`` in the nearest pyproject.toml, overridden by the command line."""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from zklint.rules import all_rules
from zklint.rules.options import RULE_OPTIONS


class ConfigError(Exception):
    """Invalid configuration; the message is one line naming the file and key."""


@dataclass
class Settings:
    root: str = "."  # the directory paths in exclude and per-file-ignores are relative to
    config_path: Optional[str] = None
    select: List[str] = field(default_factory=lambda: ["ZK"])
    ignore: List[str] = field(default_factory=list)
    extend_select: List[str] = field(default_factory=list)
    exclude: List[str] = field(default_factory=list)
    extend_exclude: List[str] = field(default_factory=list)
    per_file_ignores: Dict[str, List[str]] = field(default_factory=dict)
    respect_gitignore: bool = True
    options: Dict[str, object] = field(default_factory=dict)

    def ignored_for(self, path: str) -> List[str]:
        """Codes ignored for this file by per-file-ignores (globs on the relative path or name)."""
        if not self.per_file_ignores:
            return []
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(self.root)).replace(os.sep, "/")
        name = os.path.basename(path)
        codes: List[str] = []
        for pattern, pattern_codes in self.per_file_ignores.items():
            pattern = pattern.lstrip("./") if pattern.startswith("./") else pattern
            if fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(name, pattern) or (
                pattern.endswith("/") and rel.startswith(pattern)
            ) or rel.startswith(pattern.rstrip("/") + "/"):
                codes.extend(pattern_codes)
        return codes


_LIST_KEYS = {
    "select": "select",
    "ignore": "ignore",
    "extend-select": "extend_select",
    "exclude": "exclude",
    "extend-exclude": "extend_exclude",
}


def find_pyproject(start: str) -> Optional[str]:
    """The nearest pyproject.toml at or above `start` that has a [tool.zklint] table."""
    return PyprojectFinder().find(start)


class PyprojectFinder:
    """`find_pyproject` for the many directories of one run: each directory's answer is
    remembered, so a directory costs one look at its own pyproject.toml."""

    def __init__(self) -> None:
        self._found: Dict[str, Optional[str]] = {}

    def find(self, start: str) -> Optional[str]:
        current = os.path.abspath(start)
        climbed = []
        found: Optional[str] = None
        while current not in self._found:
            climbed.append(current)
            candidate = os.path.join(current, "pyproject.toml")
            if _configures_zklint(candidate):
                found = candidate
                break
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
        else:
            found = self._found[current]
        for directory in climbed:
            self._found[directory] = found
        return found


def _configures_zklint(candidate: str) -> bool:
    if not os.path.isfile(candidate):
        return False
    try:
        with open(candidate, "rb") as handle:
            return b"tool.zklint" in handle.read()
    except OSError:
        return False


def load_settings(config_path: Optional[str] = None, start: str = ".") -> Settings:
    path = config_path or find_pyproject(start)
    if path is None:
        return Settings(root=os.path.abspath(start), options=_default_options())
    tomllib = _tomllib()
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8") from None
    tool = document.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: [tool] must be a table")
    table = tool.get("zklint", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.zklint] must be a table")
    return settings_from_table(table, path)


def _tomllib():
    """The TOML parser, imported once a configuration is read (a run without one does not
    pay its ~4 ms of imports)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11 only
        import tomli as tomllib
    return tomllib


def _default_options() -> Dict[str, object]:
    return {key: default for key, (_, default, _) in RULE_OPTIONS.items()}


def settings_from_table(table: dict, path: str) -> Settings:
    settings = Settings(root=os.path.dirname(os.path.abspath(path)), config_path=path, options=_default_options())
    for key, value in table.items():
        where = f"{path}: [tool.zklint] {key}"
        if key in _LIST_KEYS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where} must be a list of strings")
            if key in ("select", "ignore", "extend-select"):
                value = [v.strip().upper() for v in value]
            setattr(settings, _LIST_KEYS[key], list(value))
        elif key == "per-file-ignores":
            if not isinstance(value, dict) or not all(
                isinstance(v, list) and all(isinstance(c, str) for c in v) for v in value.values()
            ):
                raise ConfigError(f"{where} must map glob patterns to lists of codes")
            settings.per_file_ignores = {k: [c.strip().upper() for c in v] for k, v in value.items()}
        elif key == "respect-gitignore":
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false")
            settings.respect_gitignore = value
        elif key in RULE_OPTIONS:
            kind = RULE_OPTIONS[key][0]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise ConfigError(f"{where} must be of type {kind.__name__}")
            settings.options[key] = value
        else:
            raise ConfigError(f"{where}: unknown key")
    # The codes the table names are checked against the rules (which imports every rule
    # module: a table naming none, like one that only excludes, does without).
    named = [
        (attr, selector) for key, attr in _LIST_KEYS.items()
        if key in table and attr in ("select", "ignore", "extend_select") for selector in getattr(settings, attr)
    ]
    codes = all_rules() if named or settings.per_file_ignores else {}
    for attr, selector in named:
        if selector != "ALL" and not any(code.startswith(selector) for code in codes):
            raise ConfigError(f"{path}: [tool.zklint] {attr.replace('_', '-')}: unknown rule selector {selector!r}")
    for pattern, pattern_codes in settings.per_file_ignores.items():
        for selector in pattern_codes:
            if not any(code.startswith(selector) for code in codes):
                raise ConfigError(
                    f"{path}: [tool.zklint] per-file-ignores {pattern!r}: unknown rule selector {selector!r}"
                )
    return settings


def split_codes(values: Optional[Sequence[str]]) -> Optional[List[str]]:
    """``--select ZK1,ZK401 --select ZK2`` -> [ZK1, ZK401, ZK2]."""
    if values is None:
        return None
    return [part.strip().upper() for value in values for part in value.split(",") if part.strip()]
