"""The analysis engine shared by the CLI and the flake8 plugin.

``lint_tree`` is the whole analysis: build the module model once, run the selected
rules over it. The CLI adds reading, the kazoo pre-filter, ``# noqa`` and fixing around
it; the flake8 plugin hands it flake8's own tree (flake8 applies ``# noqa`` itself).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Type

from zklint.facts import ModuleFacts
from zklint.model import ModuleModel
from zklint.project import mentions_kazoo
from zklint.project.solve import solve_alone
from zklint.project.summary import ModuleSummary, summarize
from zklint.rules import all_rules
from zklint.findings import Finding, Safety, built_elsewhere
from zklint.rules.base import Context, Rule
from zklint.source import SourceError, SourceFile, parse_module


# As flake8 (>= 6) reads it: codes are letters then digits (``ZK401``, ``E501``).
_NOQA = re.compile(r"#\s*noqa(?::[\s]?(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)


class UnknownSelector(ValueError):
    pass


def _specificity(code: str, selectors: Sequence[str]) -> int:
    """Length of the longest selector matching `code` (ALL counts as 0); -1 when none does."""
    return max((len(s) if s != "ALL" else 0 for s in selectors if s == "ALL" or code.startswith(s)), default=-1)


class RuleSelection:
    """Which rule codes run: ruff-style prefixes, where the most specific prefix wins."""

    def __init__(
        self,
        select: Sequence[str] = ("ZK",),
        ignore: Sequence[str] = (),
        extend_select: Sequence[str] = (),
        per_file_ignore: Sequence[str] = (),
    ):
        codes = all_rules()
        for selector in list(select) + list(ignore) + list(extend_select) + list(per_file_ignore):
            if selector != "ALL" and not any(code.startswith(selector) for code in codes):
                raise UnknownSelector(f"unknown rule selector: {selector}")
        chosen = list(select) + list(extend_select)
        self.codes = []
        for code in codes:
            best_select = _specificity(code, chosen)
            best_ignore = _specificity(code, ignore)
            if best_select >= 0 and best_select > best_ignore:
                if not any(selector == "ALL" or code.startswith(selector) for selector in per_file_ignore):
                    self.codes.append(code)

    def rules(self) -> List[Type[Rule]]:
        registry = all_rules()
        return [registry[code] for code in self.codes]


def lint_tree(
    tree: ast.Module,
    rules: Iterable[Type[Rule]],
    source: Optional[SourceFile] = None,
    options: Optional[Dict[str, object]] = None,
    facts: Optional[ModuleFacts] = None,
) -> List[Finding]:
    """Run `rules` over one parsed module. Findings are sorted and deduplicated.

    `facts` are what the project layer knows about the names the module uses (its
    factories, its callers...); without them the module is its own project.
    """
    if facts is None:
        model = ModuleModel(tree, standalone_identity(source.path if source is not None else None))
        model.use_facts(solve_alone(summarize(model)))
    else:
        model = ModuleModel(tree, facts)
    return lint_model(model, rules, source, options)


def standalone_identity(path: Optional[str]) -> ModuleFacts:
    """The name a file outside any project goes by: its file name's stem."""
    stem = os.path.splitext(os.path.basename(path or ""))[0]
    return ModuleFacts(module=stem if stem.isidentifier() else "__main__")


def lint_model(
    model: ModuleModel,
    rules: Iterable[Type[Rule]],
    source: Optional[SourceFile] = None,
    options: Optional[Dict[str, object]] = None,
) -> List[Finding]:
    context = Context(model, source, options or {})
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


def noqa_span(line: str) -> Optional[Tuple[int, int]]:
    """Where the line's ``# noqa`` comment and its codes are (start, end); None when it has none."""
    match = _NOQA.search(line)
    return None if match is None else match.span()


def is_suppressed(finding: Finding, source: SourceFile) -> bool:
    """Does a ``# noqa`` on the finding's line cover it? (`unsuppressed` first asks whether
    the text has any.)"""
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
    # Filled by `output.annotate` where the source is at hand (the worker) for printing:
    # the text of each finding's line, and fixes' edits as positions (json, sarif).
    lines: Dict[int, str] = field(default_factory=dict)
    fix_edits: Dict[tuple, list] = field(default_factory=dict)
    # For the project layer (`check_bytes(summarize_as=...)`): the module's summary, and
    # the facts it was linted with when they were its own.
    summary: Optional[ModuleSummary] = None
    summary_packed: Optional[bytes] = None  # the summary as it crosses to the main process
    summary_digest: Optional[str] = None
    own_facts: Optional[ModuleFacts] = None

    def detach(self) -> None:
        """Drop what ties the report to its file's tree: a fix's `build` is a closure over
        the rule, and so over the tree, model and source. Past the worker only its title,
        safety and imports matter, so findings keep a stand-in builder."""
        self.findings, self.fixed = self._portable_findings()

    def _portable_findings(self) -> Tuple[List[Finding], List[Finding]]:
        return [_portable(f) for f in self.findings], [_portable(f) for f in self.fixed]

    def __getstate__(self) -> dict:
        # Reports cross process boundaries (``--jobs``): a fix's `build` cannot be pickled.
        state = dict(self.__dict__)
        state["findings"], state["fixed"] = self._portable_findings()
        if self.summary_packed is not None:
            state["summary"] = None  # packed already: sent once, as bytes
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.summary is None and self.summary_packed is not None:
            self.summary = ModuleSummary.unpack(self.summary_packed)
        self.summary_packed = None


def _portable(finding: Finding) -> Finding:
    if finding.fix is None or finding.fix.build is built_elsewhere:
        return finding
    return dataclasses.replace(finding, fix=dataclasses.replace(finding.fix, build=built_elsewhere))


def lint_source(
    source: SourceFile,
    rules: Sequence[Type[Rule]],
    options: Dict[str, object],
    facts: Optional[ModuleFacts] = None,
) -> List[Finding]:
    """Parse and lint decoded source; `# noqa` applied. Raises SyntaxError, RecursionError."""
    tree = parse_module(source.text, source.path)
    return unsuppressed(lint_tree(tree, rules, source, options, facts), source)


def unsuppressed(findings: List[Finding], source: SourceFile) -> List[Finding]:
    if not findings or not _may_suppress(source):  # the text is searched once, not per finding
        return findings
    return [f for f in findings if not is_suppressed(f, source)]


def _may_suppress(source: SourceFile) -> bool:
    return "noqa" in source.text or "NOQA" in source.text


def check_bytes(
    raw: bytes,
    path: str,
    rules: Sequence[Type[Rule]],
    options: Optional[Dict[str, object]] = None,
    fix: bool = False,
    unsafe_fixes: bool = False,
    facts: Optional[ModuleFacts] = None,
    summarize_as: Optional[ModuleFacts] = None,
) -> FileReport:
    """Check one file's bytes; with `fix`, also compute the fixed bytes (never writes).

    `facts`: what the project knows about the names this module uses. `summarize_as`
    (the module's name in its project): also set ``report.summary`` for the project
    layer; without `facts`, the module is then linted with what it says about itself,
    and ``report.own_facts`` says which facts those were.

    Never raises: a file that cannot be decoded or parsed, is too deeply nested, or
    trips a bug in a rule gets one line in ``report.errors`` and the caller goes on
    with the next file. Fixed bytes are set only when they decode and parse again.
    """
    report = FileReport(path)
    options = options or {}
    # Outside a project, a client needs kazoo named in the file; within one, a module that
    # never names it may still get a client from a factory of another module.
    if not (rules or summarize_as) or (summarize_as is None and facts is None and not mentions_kazoo(raw)):
        return report
    try:
        source = SourceFile.from_bytes(raw, path)
        tree = parse_module(source.text, source.path)
        if summarize_as is not None or facts is None:
            model = ModuleModel(tree, summarize_as or standalone_identity(path))
            summary = summarize(model)
            if summarize_as is not None:
                report.summary = summary
                report.summary_packed = summary.pack()
                report.summary_digest = summary.digest(report.summary_packed)
            if facts is None:
                facts = report.own_facts = solve_alone(summary)
            model.use_facts(facts)
        else:
            model = ModuleModel(tree, facts)
        findings = unsuppressed(lint_model(model, rules, source, options), source) if rules else []
        del model
    except SourceError as exc:
        report.errors.append(str(exc))
        return report
    except SyntaxError as exc:
        report.errors.append(_syntax_error_message(exc))
        return report
    except RecursionError:
        report.errors.append("too deeply nested to analyse")
        return report
    except MemoryError:  # CPython's parser also says this when nesting overflows its stack
        report.errors.append("too deeply nested or too large to analyse")
        return report
    except ValueError as exc:  # Python < 3.11: "source code string cannot contain null bytes"
        report.errors.append(_NUL_MESSAGE if "null bytes" in str(exc) else _one_line(exc))
        return report
    except Exception as exc:  # a bug in a rule or the model: this file only
        report.errors.append(internal_error(exc))
        return report
    report.findings = findings
    if fix and any(f.fix is not None for f in findings):
        try:
            _fix(report, source, raw, rules, options, unsafe_fixes, facts)
        except RecursionError:
            report.errors.append("too deeply nested to fix; left unfixed")
        except MemoryError:
            report.errors.append("too large to fix (out of memory); left unfixed")
        except Exception as exc:
            report.errors.append(internal_error(exc, "while fixing; left unfixed"))
    return report


def _fix(report: FileReport, source: SourceFile, raw: bytes, rules, options, unsafe_fixes: bool, facts) -> None:
    from zklint.fixer import fix_source  # libcst is imported only when there is a fix

    def applicable(finding: Finding) -> bool:
        return unsafe_fixes or finding.fix.safety is Safety.SAFE

    outcome = fix_source(source, lambda s: lint_source(s, rules, options, facts), applicable, report.findings)
    report.errors.extend(outcome.errors)
    if not outcome.changed:
        return
    try:
        new_bytes = source.encode(outcome.text)
    except UnicodeEncodeError as exc:
        report.errors.append(f"fixed code cannot be written as {source.encoding} ({exc.reason}); left unfixed")
        return
    # The fixer parsed the new text; what is written must decode back to exactly that
    # text (a coding cookie the fix moved, say, would make the interpreter read it otherwise).
    problem = verify_source_bytes(new_bytes, outcome.text)
    if problem is not None:
        report.errors.append(f"fixed code would not parse ({problem}); left unfixed")
        return
    report.fixed = outcome.applied
    report.old_text = source.text
    report.new_text = outcome.text
    report.new_bytes = new_bytes
    report.findings = outcome.remaining


def verify_source_bytes(data: bytes, parsed_text: Optional[str] = None) -> Optional[str]:
    """None when `data` decodes (as the interpreter would) and parses; else why not.

    With `parsed_text` (text already known to parse), `data` must decode to exactly it.
    """
    try:
        text = SourceFile.from_bytes(data, "<fixed>").text
        if parsed_text is not None:
            if text == parsed_text:
                return None
            return "it would be read back as different text: its encoding declaration changed"
        parse_module(text)
    except SourceError as exc:
        return str(exc)
    except SyntaxError as exc:
        return _syntax_error_message(exc)
    except (ValueError, RecursionError, MemoryError) as exc:
        return _one_line(exc) or type(exc).__name__
    return None


_NUL_MESSAGE = "contains NUL bytes: not Python source"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _syntax_error_message(exc: SyntaxError) -> str:
    message = _one_line(exc.msg if exc.msg else exc) or "invalid syntax"
    if "null bytes" in message:
        return _NUL_MESSAGE
    if exc.lineno:
        return f"syntax error at line {exc.lineno}: {message}"
    return f"syntax error: {message}"


def internal_error(exc: BaseException, when: str = "") -> str:
    """The one line reported for a bug in zklint itself (never a traceback)."""
    detail = _one_line(exc)
    where = ""
    tb = exc.__traceback__
    while tb is not None:  # the innermost zklint frame says which rule or helper failed
        filename = tb.tb_frame.f_code.co_filename
        if _PACKAGE_DIR in filename:
            where = f" at zklint/{os.path.relpath(filename, _PACKAGE_DIR)}:{tb.tb_lineno}"
        tb = tb.tb_next
    text = "internal error"
    if when:
        text += " " + when
    text += f": {type(exc).__name__}"
    if detail:
        text += f": {detail}"
    return f"{text}{where} (please report this)"


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
