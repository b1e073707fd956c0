"""Printing findings and the summary line."""

from __future__ import annotations

import difflib
from typing import List, Sequence, TextIO

from zklint.engine import FileReport
from zklint.rules.base import Finding, Safety


def finding_line(path: str, finding: Finding) -> str:
    return f"{path}:{finding.line}:{finding.col + 1}: {finding.code} {finding.message}"


def write_findings(reports: Sequence[FileReport], out: TextIO) -> None:
    for report in reports:
        for finding in report.findings:
            out.write(finding_line(report.path, finding) + "\n")


def write_diff(report: FileReport, out: TextIO) -> None:
    old = report.old_text.splitlines(keepends=True)
    new = report.new_text.splitlines(keepends=True)
    for line in difflib.unified_diff(old, new, fromfile=report.path, tofile=report.path):
        out.write(line if line.endswith(("\n", "\r")) else line + "\n\\ No newline at end of file\n")


def write_fixed(reports: Sequence[FileReport], out: TextIO) -> None:
    """``--show-fixes``: what was fixed, per file and code."""
    for report in reports:
        counts: dict = {}
        for finding in report.fixed:
            counts[finding.code] = counts.get(finding.code, 0) + 1
        for code, count in sorted(counts.items()):
            out.write(f"Fixed {count} × {code} in {report.path}\n")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(reports: Sequence[FileReport], fixing: bool, unsafe_fixes: bool) -> List[str]:
    findings = [f for r in reports for f in r.findings]
    fixed = sum(len(r.fixed) for r in reports)
    if fixing:
        total = len(findings) + fixed
        if total == 0:
            return ["All checks passed!"]
        line = f"Found {_plural(total, 'error')} ({fixed} fixed, {len(findings)} remaining)."
        hidden = sum(1 for f in findings if f.fix is not None and f.fix.safety is Safety.UNSAFE)
        lines = [line]
        if hidden and not unsafe_fixes:
            lines.append(f"{hidden} more {'fix' if hidden == 1 else 'fixes'} available with --fix --unsafe-fixes.")
        return lines
    if not findings:
        return ["All checks passed!"]
    safe = sum(1 for f in findings if f.fix is not None and (f.fix.safety is Safety.SAFE or unsafe_fixes))
    unsafe = sum(1 for f in findings if f.fix is not None and f.fix.safety is Safety.UNSAFE and not unsafe_fixes)
    detail = f"{safe} fixable with --fix"
    if unsafe:
        detail += f", {unsafe} more with --fix --unsafe-fixes"
    return [f"Found {_plural(len(findings), 'error')} ({detail})."]
