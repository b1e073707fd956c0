"""Printing findings: text formats for people, machine formats for CI, statistics, diffs.

Formats (``--output-format``):

- ``full`` (default): ``path:line:col: CODE message``, then the source line with a caret
  line under the finding and the fix on offer, if any.
- ``concise``: the first line of ``full`` only, one finding per line.
- ``json``: a list of finding objects (the schema is in docs/usage.md).
- ``sarif``: SARIF 2.1.0, for GitHub code scanning and other SARIF viewers.
- ``github``: GitHub Actions workflow commands (annotations on the pull request).
- ``gitlab``: a GitLab Code Quality report.

Only the text formats (``full``, ``concise``) end with the summary line; the others print
nothing but their document, so their output can be parsed or uploaded as it is.

What a format needs beyond the `Finding` (the text of its line, a fix's edits) is
computed by `annotate` where the source is at hand: in the process that checked the file.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import unicodedata
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, TextIO, Tuple
from urllib.parse import quote

from zklint import __version__
from zklint.engine import FileReport
from zklint.rules import all_rules
from zklint.findings import Finding, Safety, edits_overlap
from zklint.rules.base import doc_pointer
from zklint.source import SourceError, SourceFile, parse_module

FORMATS = ("full", "concise", "json", "sarif", "github", "gitlab")
TEXT_FORMATS = ("full", "concise")  # the formats that end with the summary line
EDIT_FORMATS = ("json", "sarif")  # the formats that show a fix's edits

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = "error"
GITLAB_SEVERITY = "major"
_TAB = "    "
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class FixEdit(NamedTuple):
    """One edit of a fix, as positions: 1-based rows and columns (in characters), end exclusive."""

    content: str
    row: int
    column: int
    end_row: int
    end_column: int


def finding_key(finding: Finding) -> Tuple[str, int, int, int, int]:
    return (finding.code, finding.line, finding.col, finding.end_line, finding.end_col)


def applicable(finding: Finding, unsafe_fixes: bool) -> bool:
    """Whether ``--fix`` (with or without ``--unsafe-fixes``) would apply this finding's fix."""
    return finding.fix is not None and (finding.fix.safety is Safety.SAFE or unsafe_fixes)


# ---- gathering what printing needs, in the worker -------------------------------------------

def annotate(report: FileReport, raw: bytes, edits: bool = False) -> None:
    """Record the lines the findings are on and, with `edits`, each fix's edits.

    `raw` is the file's content the findings were made on (after ``--fix``, the fixed
    bytes). Never raises: what cannot be computed is left out of the output.
    """
    if not report.findings:
        return
    try:
        source = SourceFile.from_bytes(raw, report.path)
    except SourceError:
        return
    count = len(source.line_starts)
    report.lines = {f.line: source.line_text(f.line) for f in report.findings if 1 <= f.line <= count}
    if edits:
        for finding in report.findings:
            if finding.fix is not None:
                report.fix_edits[finding_key(finding)] = fix_edits(source, finding)


def fix_edits(source: SourceFile, finding: Finding) -> List[FixEdit]:
    """The edits this finding's fix makes on its own (imports included); [] when it cannot."""
    from zklint import fixer  # libcst: only for findings with a fix, only in edit formats

    try:
        edits = list(finding.fix.build(source) or ())
        if edits and finding.fix.imports:
            added = fixer.import_edits(source, parse_module(source.text), finding.fix.imports)
            if any(edits_overlap(edit, edits) for edit in added):
                return []  # the fixer would apply these in two passes; no single edit list says it
            edits += added
    except Exception:  # a fix that cannot be built is shown without edits, never a crash
        return []
    starts = source.line_starts

    def position(offset: int) -> Tuple[int, int]:
        row = bisect.bisect_right(starts, offset)
        return row, offset - starts[row - 1] + 1

    edits.sort(key=lambda e: (e.start, e.end))
    return [FixEdit(e.text, *position(e.start), *position(e.end)) for e in edits]


# ---- colour -------------------------------------------------------------------------------------

def use_color(stream: TextIO, environ: Optional[Dict[str, str]] = None) -> bool:
    """Colour when `stream` is a terminal; a non-empty NO_COLOR turns it off, FORCE_COLOR on."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    force = env.get("FORCE_COLOR")
    if force is not None and force.lower() not in ("0", "false", "no"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty()) and env.get("TERM") != "dumb"
    except ValueError:  # a closed stream
        return False


class _Paint:
    BOLD, RED, BLUE, CYAN = "1", "31", "34", "36"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\x1b[{';'.join(styles)}m{text}\x1b[0m"


# ---- text formats -----------------------------------------------------------------------------

def finding_line(path: str, finding: Finding, paint: Optional[_Paint] = None) -> str:
    paint = paint or _Paint(False)
    where = paint(f"{path}:{finding.line}:{finding.col + 1}:", _Paint.BOLD)
    return f"{where} {paint(finding.code, _Paint.BOLD, _Paint.RED)} {finding.message}"


def _width(text: str) -> int:
    """Terminal cells `text` takes: wide East Asian characters take two, combining marks none."""
    if text.isascii():
        return len(text)  # the control characters are replaced before: one cell each
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def source_excerpt(line: str, finding: Finding, paint: Optional[_Paint] = None) -> List[str]:
    """The finding's line, numbered, with carets under the part of it the finding covers."""
    paint = paint or _Paint(False)
    line = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", line)  # one cell each, nothing the terminal obeys
    number = str(finding.line)
    gutter = " " * len(number)
    col = min(finding.col, len(line))
    end = finding.end_col if finding.end_line == finding.line else len(line)
    end = max(min(end, len(line)), col)
    shown = line.replace("\t", _TAB)
    padding = " " * _width(line[:col].replace("\t", _TAB))
    carets = "^" * max(1, _width(line[col:end].replace("\t", _TAB)))
    bar = paint("|", _Paint.BLUE, _Paint.BOLD)
    return [
        f"{paint(number, _Paint.BLUE, _Paint.BOLD)} {bar} {shown}".rstrip(),
        f"{gutter} {bar} {padding}{paint(carets, _Paint.RED, _Paint.BOLD)}",
    ]


def fix_hint(finding: Finding) -> Optional[str]:
    if finding.fix is None:
        return None
    if finding.fix.safety is Safety.SAFE:
        return f"fix: {finding.fix.title} (safe: --fix)"
    return f"fix: {finding.fix.title} (unsafe: --fix --unsafe-fixes)"


def _write_full(reports: Sequence[FileReport], out: TextIO, show_source: bool, paint: _Paint) -> None:
    for report in reports:
        for finding in report.findings:
            lines = [finding_line(report.path, finding, paint)]
            line = report.lines.get(finding.line)
            gutter = " " * len(str(finding.line))
            if show_source and line is not None:
                lines += source_excerpt(line, finding, paint)
            hint = fix_hint(finding)
            if hint is not None:
                lines.append(f"{gutter} {paint('=', _Paint.BLUE, _Paint.BOLD)} {paint(hint, _Paint.CYAN)}")
            out.write("\n".join(lines) + "\n\n")


def write_findings(reports: Sequence[FileReport], out: TextIO, paint: Optional[_Paint] = None) -> None:
    """The concise format: one line per finding."""
    for report in reports:
        for finding in report.findings:
            out.write(finding_line(report.path, finding, paint) + "\n")


# ---- machine formats --------------------------------------------------------------------------

def _findings(reports: Sequence[FileReport]) -> Iterator[Tuple[FileReport, Finding]]:
    for report in reports:
        for finding in report.findings:
            yield report, finding


def _rule_name(code: str) -> str:
    rule = all_rules().get(code)
    return rule.name if rule is not None else code


def relative_path(path: str) -> str:
    """The path relative to the current directory, with forward slashes."""
    if path in ("-", "<stdin>"):
        return path
    try:
        path = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        path = os.path.abspath(path)
    return path.replace(os.sep, "/")


def fingerprints(reports: Sequence[FileReport]) -> Dict[Tuple[str, Tuple], str]:
    """A stable id per finding: its code, file and the text of its line (not the line number,
    so unrelated edits above it keep it), and which of identical ones it is."""
    import hashlib  # (here: it loads OpenSSL, 4 ms, which only these formats need)

    found: Dict[Tuple[str, Tuple], str] = {}
    seen: Dict[str, int] = {}
    for report, finding in _findings(reports):
        text = report.lines.get(finding.line)
        anchor = " ".join(text.split()) if text is not None else f"line {finding.line}"
        basis = "\0".join((finding.code, relative_path(report.path), anchor))
        seen[basis] = seen.get(basis, 0) + 1
        digest = hashlib.sha256(f"{basis}\0{seen[basis]}".encode("utf-8", "surrogatepass")).hexdigest()
        found[(report.path, finding_key(finding))] = digest[:32]
    return found


def _json_fix(report: FileReport, finding: Finding) -> Optional[dict]:
    if finding.fix is None:
        return None
    fix: dict = {"applicability": finding.fix.safety.value, "message": finding.fix.title}
    edits = report.fix_edits.get(finding_key(finding))
    if edits is not None:
        fix["edits"] = [
            {
                "content": e.content,
                "location": {"row": e.row, "column": e.column},
                "end_location": {"row": e.end_row, "column": e.end_column},
            }
            for e in edits
        ]
    return fix


def json_findings(reports: Sequence[FileReport]) -> List[dict]:
    return [
        {
            "code": finding.code,
            "name": _rule_name(finding.code),
            "message": finding.message,
            "filename": report.path,
            "location": {"row": finding.line, "column": finding.col + 1},
            "end_location": {"row": finding.end_line, "column": finding.end_col + 1},
            "fix": _json_fix(report, finding),
            "doc": doc_pointer(finding.code),
        }
        for report, finding in _findings(reports)
    ]


def _sarif_region(row: int, column: int, end_row: int, end_column: int) -> dict:
    return {"startLine": row, "startColumn": column, "endLine": end_row, "endColumn": end_column}


def _sarif_rule(rule) -> dict:
    from zklint.docs import rule_markdown, rule_text

    entry = {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.why},
        "help": {"text": rule_text(rule), "markdown": rule_markdown(rule)},
        "defaultConfiguration": {"level": SARIF_LEVEL},
        "properties": {"tags": ["kazoo", "zookeeper", "reliability"], "precision": "high"},
    }
    if rule.fix_safety is not None:
        entry["properties"]["fix-safety"] = rule.fix_safety.value
    return entry


def sarif_log(reports: Sequence[FileReport]) -> dict:
    registry = all_rules()
    index = {code: i for i, code in enumerate(registry)}
    prints = fingerprints(reports)
    results = []
    for report, finding in _findings(reports):
        artifact = {"uri": quote(relative_path(report.path)), "uriBaseId": "%SRCROOT%"}
        result: dict = {"ruleId": finding.code}
        if finding.code in index:
            result["ruleIndex"] = index[finding.code]
        result.update({
            "level": SARIF_LEVEL,
            "message": {"text": finding.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": artifact,
                        "region": _sarif_region(finding.line, finding.col + 1, finding.end_line, finding.end_col + 1),
                    }
                }
            ],
            "partialFingerprints": {"zklint/v1": prints[(report.path, finding_key(finding))]},
        })
        edits = report.fix_edits.get(finding_key(finding))
        if finding.fix is not None and edits:
            result["fixes"] = [
                {
                    "description": {"text": f"{finding.fix.title} ({finding.fix.safety.value} fix)"},
                    "artifactChanges": [
                        {
                            "artifactLocation": artifact,
                            "replacements": [
                                {
                                    "deletedRegion": _sarif_region(e.row, e.column, e.end_row, e.end_column),
                                    "insertedContent": {"text": e.content},
                                }
                                for e in edits
                            ],
                        }
                    ],
                }
            ]
        results.append(result)
    # Imported here, not at the top: urllib.request imports http.client, and run as
    # `python -m zklint` from a project whose root holds an `http/` package that
    # package would shadow the standard library's for every check, not only SARIF output.
    from urllib.request import pathname2url

    root = pathname2url(os.path.abspath(os.getcwd()))
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "zklint",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [_sarif_rule(rule) for rule in registry.values()],
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": "file://" + root.rstrip("/") + "/"}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_lines(reports: Sequence[FileReport]) -> List[str]:
    lines = []
    for report, finding in _findings(reports):
        properties = [
            ("title", f"zklint ({finding.code})"),
            ("file", relative_path(report.path)),
            ("line", finding.line),
            ("col", finding.col + 1),
            ("endLine", finding.end_line),
            ("endColumn", finding.end_col + 1),
        ]
        spec = ",".join(f"{key}={_escape_property(str(value))}" for key, value in properties)
        lines.append(f"::error {spec}::{_escape_data(finding.message)}")
    return lines


def gitlab_report(reports: Sequence[FileReport]) -> List[dict]:
    prints = fingerprints(reports)
    return [
        {
            "description": finding.message,
            "check_name": finding.code,
            "fingerprint": prints[(report.path, finding_key(finding))],
            "severity": GITLAB_SEVERITY,
            "location": {
                "path": relative_path(report.path),
                "lines": {"begin": finding.line, "end": finding.end_line},
            },
        }
        for report, finding in _findings(reports)
    ]


def _dump(document: object, out: TextIO) -> None:
    json.dump(document, out, indent=2, ensure_ascii=False)
    out.write("\n")


def write_report(
    reports: Sequence[FileReport],
    out: TextIO,
    output_format: str = "full",
    show_source: bool = True,
    color: bool = False,
) -> None:
    """Print the findings of `reports` in `output_format` (no summary: see `summary`)."""
    paint = _Paint(color and output_format in TEXT_FORMATS)
    if output_format == "full":
        _write_full(reports, out, show_source, paint)
    elif output_format == "concise":
        write_findings(reports, out, paint)
    elif output_format == "json":
        _dump(json_findings(reports), out)
    elif output_format == "sarif":
        _dump(sarif_log(reports), out)
    elif output_format == "github":
        for line in github_lines(reports):
            out.write(line + "\n")
    elif output_format == "gitlab":
        _dump(gitlab_report(reports), out)
    else:
        raise ValueError(f"unknown output format {output_format!r}")


# ---- statistics ------------------------------------------------------------------------------

def statistics(reports: Sequence[FileReport], unsafe_fixes: bool = False) -> List[dict]:
    """Per code, most frequent first: its name, how many findings, how many ``--fix`` would fix."""
    counts: Dict[str, List[int]] = {}
    for _, finding in _findings(reports):
        entry = counts.setdefault(finding.code, [0, 0])
        entry[0] += 1
        entry[1] += applicable(finding, unsafe_fixes)
    rows = [
        {"code": code, "name": _rule_name(code), "count": count, "fixable": fixable}
        for code, (count, fixable) in counts.items()
    ]
    return sorted(rows, key=lambda row: (-row["count"], row["code"]))


def write_statistics(
    reports: Sequence[FileReport], out: TextIO, output_format: str = "full", unsafe_fixes: bool = False
) -> None:
    """``--statistics``: a JSON list for ``json``, else a table; ``[*]`` marks codes ``--fix`` fixes."""
    rows = statistics(reports, unsafe_fixes)
    if output_format == "json":
        _dump(rows, out)
        return
    width = max((len(str(row["count"])) for row in rows), default=1)
    for row in rows:
        marker = "[*]" if row["fixable"] else "   "
        out.write(f"{row['count']:>{width}}  {row['code']}  {marker} {row['name']}\n")


# ---- diffs, fixes, summary -----------------------------------------------------------------

def write_diff(report: FileReport, out: TextIO) -> None:
    import difflib  # (only --diff needs it)

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
    safe = sum(1 for f in findings if applicable(f, unsafe_fixes))
    unsafe = sum(1 for f in findings if f.fix is not None and f.fix.safety is Safety.UNSAFE and not unsafe_fixes)
    detail = f"{safe} fixable with --fix"
    if unsafe:
        detail += f", {unsafe} more with --fix --unsafe-fixes"
    return [f"Found {_plural(len(findings), 'error')} ({detail})."]
