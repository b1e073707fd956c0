"""The flake8 adapter: flake8's already-parsed tree goes through the same engine.

flake8 applies ``# noqa`` and per-file-ignores itself, so findings pass through as they
are; the plugin's results equal ``zklint check`` on the same file.
"""

from __future__ import annotations

import ast
from typing import Iterator, List, Optional, Tuple

from zklint import __version__
from zklint.engine import RuleSelection, lint_tree
from zklint.source import SourceFile


class ZkLintChecker:
    name = "zklint"
    version = __version__

    def __init__(self, tree: ast.Module, lines: Optional[List[str]] = None, filename: str = "") -> None:
        self.tree = tree
        self.lines = lines
        self.filename = filename

    def run(self) -> Iterator[Tuple[int, int, str, type]]:
        # Same pre-filter as the CLI: every rule needs kazoo named in the file.
        if self.lines is not None and not any("azoo" in line for line in self.lines):
            return
        source = SourceFile("".join(self.lines), self.filename) if self.lines is not None else None
        try:
            findings = lint_tree(self.tree, RuleSelection().rules(), source)
        except Exception as exc:  # never crash flake8: report the failure as one finding
            yield 1, 0, f"ZK000 zklint internal error: {type(exc).__name__}: {exc}", type(self)
            return
        for finding in findings:
            yield finding.line, finding.col, f"{finding.code} {finding.message}", type(self)
