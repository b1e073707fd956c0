"""Every fix together: `zklint check --fix --unsafe-fixes` with all rules on, over each
fixable fixture, must settle (no errors), parse, leave none of the fixture's code behind,
and be a fixed point (a second run changes nothing). Rules' fixes must not fight."""

from __future__ import annotations

import ast

import pytest

from tests.fixture_harness import Fixture, all_fixtures
from zklint.engine import lint_source
from zklint.fixer import fix_source
from zklint.rules import all_rules
from zklint.source import SourceFile

FIXABLE = [f for f in all_fixtures() if f.is_positive and f.fixed_path.exists()]
RULES = list(all_rules().values())


def _fix_everything(source: SourceFile):
    return fix_source(source, lambda s: lint_source(s, RULES, {}), lambda finding: True)


@pytest.mark.parametrize("fixture", FIXABLE, ids=lambda f: f.id)
def test_all_fixes_together_settle(fixture: Fixture) -> None:
    source = fixture.read()
    outcome = _fix_everything(source)
    assert outcome.errors == []
    ast.parse(outcome.text)
    assert [f for f in outcome.remaining if f.code == fixture.code] == []
    fixed = SourceFile(outcome.text, source.path, source.encoding)
    again = _fix_everything(fixed)
    assert again.text == outcome.text and not again.applied
