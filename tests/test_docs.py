"""Rule docs come from the rule classes: `zklint rule`, docs/rules/ZKnnn.md, docs pointers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.cli_support import run_main
from tests.fixture_harness import all_fixtures, engine_findings
from zklint import docs
from zklint.rules import all_rules
from zklint.findings import Safety

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs" / "rules"
RULES = all_rules()
SECTIONS = ("## What it does", "## Why is this bad?", "## Example", "## Use instead", "## Fix safety",
            "## Options", "## Known limits")


def test_docs_rules_directory_is_current():
    """Fails when a rule was added, removed or changed without regenerating its page."""
    problems = docs.stale_docs(str(DOCS_DIR))
    assert not problems, "\n".join(problems) + "\nregenerate with: python -m zklint.docs"


@pytest.mark.parametrize("code", list(RULES))
def test_rule_definition_is_complete(code):
    rule = RULES[code]
    assert rule.code == code
    for attribute in ("name", "summary", "why", "example", "use_instead"):
        assert getattr(rule, attribute, "").strip(), f"{code}.{attribute} is empty"
    assert "\n" not in rule.summary.strip(), f"{code}.summary must be one line"
    ast.parse(rule.example)
    ast.parse(rule.use_instead)
    if rule.fix_safety is not None:
        assert rule.fix_safety_reason.strip(), f"{code} has a fix but no fix_safety_reason"
    for key, spec in rule.options.items():
        assert len(spec) == 3 and spec[2].strip(), f"{code} option {key}: (type, default, help)"


@pytest.mark.parametrize("code", list(RULES))
def test_page_has_every_section_in_order(code):
    page = docs.rule_markdown(RULES[code])
    assert page.startswith(f"# {code}: {RULES[code].name}\n")
    positions = [page.index(section + "\n") for section in SECTIONS]
    assert positions == sorted(positions)
    for key in RULES[code].options:
        assert f"`{key}`" in page and f"`--zklint-{key}`" in page


def test_fix_safety_wording():
    class Fake:
        code, name, summary, why, example, use_instead = "ZK999", "fake", "s", "w", "x = 1", "x = 2"
        fix_safety, fix_safety_reason, limits, options = Safety.UNSAFE, "Because.", "", {}

    page = docs.rule_markdown(Fake)
    assert "The fix is unsafe: applied only with `zklint check --fix --unsafe-fixes`. Because." in page
    assert "## Known limits\n\nNone known." in page
    assert "This rule has no options." in page
    Fake.fix_safety = None
    assert "No automatic fix" in docs.rule_markdown(Fake)


def test_zklint_rule_prints_the_page(capsys):
    result = run_main(["rule", "ZK401"], capsys)
    assert result.code == 0
    assert result.out == docs.rule_markdown(RULES["ZK401"]) + "\n"
    assert run_main(["rule", "zk401"], capsys).out == result.out


def test_zklint_rule_unknown_code(capsys):
    result = run_main(["rule", "ZK999"], capsys)
    assert result.code == 2 and "unknown rule" in result.err


def test_zklint_rule_all_lists_code_name_and_fix(capsys):
    result = run_main(["rule", "--all"], capsys)
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["CODE", "NAME", "FIX"]
    assert len(lines) == len(RULES) + 1
    for line, (code, rule) in zip(lines[1:], RULES.items()):
        assert line.split(None, 2) == [code, rule.name, docs.fix_label(rule)]


def test_write_docs_then_check(tmp_path, capsys):
    target = tmp_path / "rules"
    result = run_main(["rule", "--write-docs", str(target)], capsys)
    assert result.code == 0
    assert sorted(p.name for p in target.iterdir()) == sorted([f"{code}.md" for code in RULES] + ["README.md"])
    assert docs.stale_docs(str(target)) == []
    assert docs.write_docs(str(target)) == []  # nothing to do a second time

    first = target / f"{next(iter(RULES))}.md"
    first.write_text(first.read_text() + "edited by hand\n")
    (target / "README.md").unlink()
    (target / "ZK999.md").write_text("# a rule that no longer exists\n")
    (target / "notes.txt").write_text("not generated: left alone\n")
    assert sorted(docs.stale_docs(str(target))) == sorted([
        f"{first}: stale", f"{target / 'README.md'}: missing", f"{target / 'ZK999.md'}: no such rule"
    ])
    assert docs.main(["--check", str(target)]) == 1
    assert "python -m zklint.docs" in capsys.readouterr().err
    assert docs.main([str(target)]) == 0
    assert docs.main(["--check", str(target)]) == 0
    assert (target / "notes.txt").exists() and not (target / "ZK999.md").exists()


def test_index_links_every_rule():
    index = docs.index_markdown(RULES)
    for code, rule in RULES.items():
        assert f"[{code}]({code}.md) | {rule.name} |" in index


def test_every_finding_points_at_its_docs():
    """The docs pointer is added once, centrally: every rule's findings end with it."""
    seen = set()
    for fixture in all_fixtures():
        if not fixture.path.name.startswith("bad_") or fixture.code not in RULES:
            continue
        for finding in engine_findings(fixture.read(), {fixture.code}):
            assert finding.message.endswith(f" (zklint rule {finding.code})"), finding
            assert finding.message.count("(zklint rule") == 1
            seen.add(finding.code)
    assert "ZK401" in seen


REPO = Path(__file__).resolve().parent.parent


def test_usage_guide_names_real_hooks_formats_and_flags():
    yaml = pytest.importorskip("yaml")
    usage = (REPO / "docs" / "usage.md").read_text()
    hooks = {hook["id"] for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert {"zklint", "zklint-fix"} <= hooks
    for hook in hooks:
        assert f"- id: {hook}" in usage
    from zklint.output import FORMATS

    for name in FORMATS:
        assert f"### {name}\n" in usage
    for flag in ("--output-format", "--statistics", "--no-show-source", "NO_COLOR", "FORCE_COLOR"):
        assert flag in usage


def test_github_actions_example_uploads_sarif():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO / "docs" / "github-actions-zklint.yml").read_text())
    (job,) = workflow["jobs"].values()
    assert job["permissions"]["security-events"] == "write"
    runs = " ".join(step.get("run", "") for step in job["steps"])
    assert "zklint check --output-format sarif" in runs
    upload = next(step for step in job["steps"] if step.get("uses", "").startswith("github/codeql-action/upload-sarif"))
    assert upload["with"]["sarif_file"] in runs
    assert "always()" in upload["if"]
