"""The rule catalog agrees everywhere: registry, RULES.md, fixtures, docs pages, README,
and each rule's own documented example is flagged while its "use instead" is clean."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zklint.engine import lint_source
from zklint.rules import all_rules
from zklint.source import SourceFile

ROOT = Path(__file__).resolve().parent.parent
RULES_MD = ROOT.parent / "shared" / "RULES.md"
RULES = all_rules()


def test_registry_matches_the_spec() -> None:
    if not RULES_MD.exists():
        pytest.skip(f"{RULES_MD} is not beside this checkout")
    spec = dict(re.findall(r"\*\*(ZK\d{3}) ([a-z0-9-]+)\*\*", RULES_MD.read_text()))
    assert spec == {code: rule.name for code, rule in RULES.items()}


@pytest.mark.parametrize("code", RULES)
def test_code_is_documented_and_has_fixtures(code: str) -> None:
    assert (ROOT / "docs" / "rules" / f"{code}.md").exists()
    assert list((ROOT / "tests" / "fixtures" / code).glob("bad_*.py"))
    assert code in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("code", RULES)
def test_example_is_flagged_and_use_instead_is_clean(code: str) -> None:
    rule = RULES[code]

    def codes(text: str) -> list:
        return [f.code for f in lint_source(SourceFile(text, f"{code}-example.py"), [rule], {})]

    assert code in codes(rule.example), "the documented example is not flagged"
    assert codes(rule.use_instead) == [], "the documented fix is flagged"


def test_readme_rules_table_is_current() -> None:
    from zklint import docs

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert docs.readme_with_table(text) == text, "run `python -m zklint.docs` to regenerate"
