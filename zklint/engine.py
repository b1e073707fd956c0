"""The analysis engine shared by the CLI and the flake8 plugin.

``lint_tree`` is the whole analysis: build the module model once, run the selected
rules over it. The CLI adds reading, the kazoo pre-filter, ``# noqa`` and fixing around
it; the flake8 plugin hands it flake8's own tree (flake8 applies ``# noqa`` itself).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Type

from zklint.model import ModuleModel
from zklint.rules import all_rules
from zklint.rules.base import Context, Finding, Rule, Safety
from zklint.source import SourceError, SourceFile

# Every rule needs a kazoo client, and a client needs the text "kazoo" or "Kazoo" in the
# file (an import, an annotation). Files without it get no AST at all.
KAZOO_MARKER = b"azoo"

_NOQA = re.compile(r"#\s*noqa(?::[\s]?(?P<codes>[A-Z][0-9]+(?:[,\s]+[A-Z][0-9]+)*))?", re.IGNORECASE)


class UnknownSelector(ValueError):
    pass


class RuleSelection:
    """Which rule codes run: ruff-style prefixes, where the most specific prefix wins."""

    def __init__(self, select: Sequence[str] = ("ZK",), ignore: Sequence[str] = (), extend_select: Sequence[str] = ()):
        codes = all_rules()
        for selector in list(select) + list(ignore) + list(extend_select):
            if selector != "ALL" and not any(code.startswith(selector) for code in codes):
                raise UnknownSelector(f"unknown rule selector: {selector}")
        chosen = list(select) + list(extend_select)
        self.codes = []
        for code in codes:
            best_select = max((len(s if s != "ALL" else "") for s in chosen if s == "ALL" or code.startswith(s)), default=-1)
            best_ignore = max((len(s if s != "ALL" else "") for s in ignore if s == "ALL" or code.startswith(s)), default=-1)
            if best_select >= 0 and best_select > best_ignore:
                self.codes.append(code)

    def rules(self) -> List[Type[Rule]]:
        registry = all_rules()
        return [registry[code] for code in self.codes]


def lint_tree(
    tree: ast.Module,
    rules: Iterable[Type[Rule]],
    source: Optional[SourceFile] = None,
    options: Optional[Dict[str, object]] = None,
) -> List[Finding]:
    """Run `rules` over one parsed module. Findings are sorted and deduplicated."""
    context = Context(ModuleModel(tree), source, options or {})
    findings = set()
    for rule_class in rules:
        findings.update(rule_class(context).check())
    return sorted(findings, key=Finding.sort_key)


def noqa_codes(line: str) -> Optional[frozenset]:
    """None when the line has no ``# noqa``; an empty set for a bare one (suppresses all)."""
    match = _NOQA.search(line)
    if match is None:
        return None
    codes = match.group("codes")
    if not codes:
        return frozenset()
    return frozenset(c.upper() for c in re.split(r"[,\s]+", codes) if c)


def is_suppressed(finding: Finding, source: SourceFile) -> bool:
    if "noqa" not in source.text and "NOQA" not in source.text:
        return False
    codes = noqa_codes(source.line_text(finding.line))
    if codes is None:
        return False
    return not codes or any(finding.code.startswith(c) for c in codes)


@dataclass
class FileReport:
    """What checking (and maybe fixing) one file produced."""

    path: str
    findings: List[Finding] = field(default_factory=list)
    fixed: List[Finding] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    new_bytes: Optional[bytes] = None  # set when --fix/--diff changed the file
    old_text: Optional[str] = None
    new_text: Optional[str] = None


def lint_source(source: SourceFile, rules: Sequence[Type[Rule]], options: Dict[str, object]) -> List[Finding]:
    """Parse and lint decoded source; `# noqa` applied. Raises SyntaxError, RecursionError."""
    tree = ast.parse(source.text, filename=source.path)
    return [f for f in lint_tree(tree, rules, source, options) if not is_suppressed(f, source)]


def check_bytes(
    raw: bytes,
    path: str,
    rules: Sequence[Type[Rule]],
    options: Optional[Dict[str, object]] = None,
    fix: bool = False,
    unsafe_fixes: bool = False,
) -> FileReport:
    """Check one file's bytes; with `fix`, also compute the fixed bytes (never writes)."""
    report = FileReport(path)
    options = options or {}
    if KAZOO_MARKER not in raw or not rules:
        return report
    try:
        source = SourceFile.from_bytes(raw, path)
        findings = lint_source(source, rules, options)
    except SourceError as exc:
        report.errors.append(str(exc))
        return report
    except SyntaxError as exc:
        report.errors.append(f"syntax error at line {exc.lineno}: {exc.msg}")
        return report
    except (RecursionError, MemoryError):
        report.errors.append("too deeply nested to analyse")
        return report
    except ValueError as exc:  # e.g. source code string cannot contain null bytes
        report.errors.append(str(exc))
        return report
    if fix and any(f.fix is not None for f in findings):
        from zklint.fixer import fix_source  # libcst is imported only when there is a fix

        def applicable(finding: Finding) -> bool:
            return unsafe_fixes or finding.fix.safety is Safety.SAFE

        outcome = fix_source(source, lambda s: lint_source(s, rules, options), applicable)
        report.errors.extend(outcome.errors)
        if outcome.changed:
            report.fixed = outcome.applied
            report.old_text = source.text
            report.new_text = outcome.text
            report.new_bytes = source.encode(outcome.text)
        findings = outcome.remaining
    report.findings = findings
    return report
