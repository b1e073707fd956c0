"""Every fixture, through the engine (as the CLI runs it) and the flake8 plugin."""

from __future__ import annotations

import ast

import pytest

from tests.fixture_harness import Fixture, all_fixtures, engine_findings, flake8_findings
from zklint.engine import lint_source
from zklint.fixer import fix_source
from zklint.rules import all_rules
from zklint.source import SourceFile

FIXTURES = all_fixtures()


def _codes(fixture: Fixture) -> set:
    return {fixture.code} | {code for _, code, _ in fixture.expected()}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.id)
def test_findings_match_expectations(fixture: Fixture) -> None:
    source = fixture.read()
    codes = _codes(fixture)
    findings = engine_findings(source, codes)
    got = {(f.line, f.code) for f in findings}
    assert got == {(line, code) for line, code, _ in fixture.expected()}
    columns = {(f.line, f.code): f.col + 1 for f in findings}
    for line, code, column in fixture.expected():
        if column is not None:
            assert columns[(line, code)] == column, f"{code} on line {line}"
    for finding in findings:  # the position points at code, not at indentation or past the end
        text = source.line_text(finding.line)
        assert finding.col < len(text) and not text[finding.col].isspace()


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.id)
def test_flake8_plugin_reports_the_same(fixture: Fixture) -> None:
    source = fixture.read()
    codes = _codes(fixture)
    assert flake8_findings(source, codes) == {(f.line, f.code) for f in engine_findings(source, codes)}


def _fix(source: SourceFile, code: str):
    rules = [all_rules()[code]]
    return fix_source(source, lambda s: lint_source(s, rules, {}), lambda f: f.code == code)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.id)
def test_fix_output(fixture: Fixture) -> None:
    source = fixture.read()
    fixable = [f for f in engine_findings(source, {fixture.code}) if f.fix is not None]
    if not fixable:
        assert not fixture.fixed_path.exists(), "a .fixed.py file for a fixture with no fixable finding"
        return
    assert fixture.fixed_path.exists(), f"missing expected output {fixture.fixed_path.name}"
    outcome = _fix(source, fixture.code)
    assert not outcome.errors
    fixed_bytes = source.encode(outcome.text)
    assert fixed_bytes == fixture.fixed_path.read_bytes()
    ast.parse(outcome.text)  # parses
    fixed = SourceFile(outcome.text, str(fixture.fixed_path), source.encoding)
    assert [f for f in lint_source(fixed, [all_rules()[fixture.code]], {})] == []  # re-lints clean
    again = _fix(fixed, fixture.code)  # idempotent
    assert again.text == outcome.text and not again.applied


def test_every_rule_has_enough_fixtures() -> None:
    for code, rule in all_rules().items():
        mine = [f for f in FIXTURES if f.code == code]
        positive = [f for f in mine if f.is_positive]
        negative = [f for f in mine if not f.is_positive]
        assert len(positive) >= 5, f"{code}: {len(positive)} positive fixtures"
        assert len(negative) >= 5, f"{code}: {len(negative)} negative fixtures"
        if rule.fix_safety is not None:
            assert any(f.fixed_path.exists() for f in positive), f"{code}: no expected fix output"


def test_fixture_names_say_what_they_are() -> None:
    for fixture in FIXTURES:
        if fixture.path.name.startswith("bad_"):
            assert fixture.is_positive, fixture.id
        elif fixture.path.name.startswith("good_"):
            assert not fixture.is_positive, fixture.id
        else:
            pytest.fail(f"{fixture.id}: name fixtures bad_*.py or good_*.py")
