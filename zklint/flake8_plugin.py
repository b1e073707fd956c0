"""The flake8 adapter: flake8's already-parsed tree goes through the same engine.

flake8 applies ``# noqa``, ``--select``/``--ignore`` and ``--per-file-ignores`` itself, so
findings pass through as they are; the plugin's results equal ``zklint check`` on the
same file. Every option a rule declares in ``Rule.options`` is a flake8 option too,
``--zklint-<key>`` on the command line or ``zklint-<key> = value`` under ``[flake8]``.
"""

from __future__ import annotations

import ast
from typing import Any, Dict, Iterator, List, Optional, Tuple

from zklint import __version__

INTERNAL_ERROR_CODE = "ZK000"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _dest(key: str) -> str:
    return "zklint_" + key.replace("-", "_")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _declared_options() -> Dict[str, tuple]:
    from zklint.rules.options import RULE_OPTIONS

    return RULE_OPTIONS


def _describe(exc: Exception) -> str:
    try:
        from zklint.engine import internal_error

        return internal_error(exc)
    except Exception:
        return f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"


class ZkLintChecker:
    name = "zklint"
    version = __version__
    # The rule options as flake8 parsed them (`parse_options`); rules' defaults otherwise.
    rule_options: Dict[str, object] = {}

    def __init__(self, tree: ast.Module, lines: Optional[List[str]] = None, filename: str = "") -> None:
        self.tree = tree
        self.lines = lines
        self.filename = filename

    @classmethod
    def add_options(cls, manager) -> None:
        from zklint.docs import flake8_option

        for key, (kind, default, help_text) in sorted(_declared_options().items()):
            settings = dict(parse_from_config=True, dest=_dest(key), default=default)
            if kind is bool:
                settings.update(type=_boolean, metavar="true|false")
            elif kind is list:
                settings.update(comma_separated_list=True, metavar="VALUES")
            else:
                settings.update(type=kind, metavar=kind.__name__.upper())
            help_suffix = f" (zklint rule option `{key}`; default: %(default)s)"
            manager.add_option(flake8_option(key), help=help_text.replace("%", "%%") + help_suffix, **settings)

    @classmethod
    def parse_options(cls, options) -> None:
        values = {}
        for key, (kind, default, _) in _declared_options().items():
            value = getattr(options, _dest(key), default)
            if kind is list and isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            values[key] = value
        cls.rule_options = values

    def run(self) -> Iterator[Tuple[int, int, str, type]]:
        try:
            findings = self._findings()
        except Exception as exc:  # never crash flake8: report the failure as one finding
            yield 1, 0, f"{INTERNAL_ERROR_CODE} zklint {_describe(exc)}", type(self)
            return
        for finding in findings:
            yield finding.line, finding.col, f"{finding.code} {finding.message}", type(self)

    def _findings(self):
        from zklint.project import mentions_kazoo

        text = "".join(self.lines) if self.lines is not None else None
        names_kazoo = text is None or mentions_kazoo(text)  # one scan of the joined text: faster than per line
        facts = None
        if self.filename and self.filename not in ("-", "stdin") and self.lines is not None:
            # the same project facts as `zklint check` (the project is read once per process)
            from zklint.checking import facts_for_file, project_names_kazoo

            if not names_kazoo and not project_names_kazoo(self.filename):
                return []  # no file of the project names kazoo: no client can reach this one
            facts = facts_for_file(self.filename, text.encode("utf-8"))
        if not names_kazoo and facts is None:
            return []  # as the CLI: no client can reach a file that neither names kazoo nor wraps it
        # The engine is imported once a file may hold findings: flake8 runs over code
        # without kazoo pay for nothing of it.
        from zklint.engine import RuleSelection, lint_tree
        from zklint.source import SourceFile

        source = SourceFile(text, self.filename) if text is not None else None
        options = dict(self.rule_options) if self.rule_options else None
        return lint_tree(self.tree, RuleSelection().rules(), source, options, facts)
