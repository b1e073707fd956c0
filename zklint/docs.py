"""Rule documentation, generated from each rule's own definition (one source of truth)."""

from __future__ import annotations

from typing import Type

from zklint.rules.base import Rule


def rule_markdown(rule: Type[Rule]) -> str:
    sections = [f"# {rule.code} {rule.name}", "", rule.summary, "", "## Why is this bad?", "", rule.why]
    sections += ["", "## Example", "", "```python", rule.example.rstrip("\n"), "```"]
    sections += ["", "## Use instead", "", "```python", rule.use_instead.rstrip("\n"), "```"]
    sections += ["", "## Fix safety", ""]
    if rule.fix_safety is None:
        sections.append("No automatic fix: the right change depends on what the program means.")
    else:
        sections.append(f"The fix is **{rule.fix_safety.value}**: {rule.fix_safety_reason}")
    if rule.limits:
        sections += ["", "## Known limits", "", rule.limits]
    return "\n".join(sections) + "\n"
