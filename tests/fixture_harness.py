"""Reading fixtures: `tests/fixtures/<CODE>/*.py`, expectations inline.

A line expecting findings carries ``# error: ZK401`` (several: ``# error: ZK101, ZK102``;
an exact 1-based column: ``# error: ZK401:9``). ``name.fixed.py`` beside ``name.py`` is
the expected result of fixing that code (unsafe fixes included).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Set, Tuple

from zklint.engine import lint_source
from zklint.flake8_plugin import ZkLintChecker
from zklint.rules import all_rules
from zklint.source import SourceFile

FIXTURES = Path(__file__).parent / "fixtures"
_EXPECTATION = re.compile(r"#\s*error:\s*(?P<codes>ZK\d{3}(?::\d+)?(?:\s*,\s*ZK\d{3}(?::\d+)?)*)")


@dataclass(frozen=True)
class Fixture:
    code: str
    path: Path

    @property
    def fixed_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".fixed.py")

    @property
    def id(self) -> str:
        return f"{self.code}/{self.path.name}"

    def read(self) -> SourceFile:
        return SourceFile.from_bytes(self.path.read_bytes(), str(self.path))

    def expected(self) -> Set[Tuple[int, str, Optional[int]]]:
        """(line, code, column or None) for every inline expectation."""
        found = set()
        for lineno, line in enumerate(self.read().text.splitlines(), start=1):
            match = _EXPECTATION.search(line)
            if match:
                for item in re.split(r"\s*,\s*", match.group("codes")):
                    code, _, column = item.partition(":")
                    found.add((lineno, code, int(column) if column else None))
        return found

    @property
    def is_positive(self) -> bool:
        return any(code == self.code for _, code, _ in self.expected())


def all_fixtures() -> List[Fixture]:
    fixtures = []
    for directory in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        for path in sorted(directory.glob("*.py")):
            if not path.name.endswith(".fixed.py"):
                fixtures.append(Fixture(directory.name, path))
    return fixtures


def engine_findings(source: SourceFile, codes: Set[str]):
    rules = [rule for code, rule in all_rules().items() if code in codes]
    return [f for f in lint_source(source, rules, {}) if f.code in codes]


def flake8_findings(source: SourceFile, codes: Set[str]):
    checker = ZkLintChecker(ast.parse(source.text), source.text.splitlines(keepends=True), str(source.path))
    return {(line, message.split()[0]) for line, _, message, _ in checker.run() if message.split()[0] in codes}
