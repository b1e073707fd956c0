"""The one fixer: turns findings' fixes into edits, applies them, re-lints, repeats.

Rules never touch text themselves. A fix builds `Edit`s with the helpers here, which
parse only the statement or expression being rewritten with libcst and splice the
rendered result back into the original text, so every byte outside an edit stays what
it was (comments, quotes, CRLF, BOM, encoding, trailing whitespace).

Overlapping fixes are never applied together: the first (in source order) wins, the
others wait for the next pass, after a re-lint on the new text. Passes are bounded;
a fix that keeps re-appearing is reported, not looped on.
"""

from __future__ import annotations

import ast
import contextlib
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Set, Tuple

from zklint.lazy_import import libcst as cst  # imported on first use: fixes only

from zklint.findings import Edit, Finding, Import, edits_overlap
from zklint.source import SourceFile, parse_module

MAX_PASSES = 10

_WRAPPER = "if True:"


class FixError(Exception):
    """A fix could not be built; the finding stays unfixed."""


# ---- building edits ---------------------------------------------------------------------

def parser_config(source: SourceFile) -> cst.PartialParserConfig:
    return cst.PartialParserConfig(default_newline=source.newline, default_indent=source.indent_unit)


def render(source: SourceFile, node: cst.CSTNode) -> str:
    module = cst.Module(body=[], default_newline=source.newline, default_indent=source.indent_unit)
    return module.code_for_node(node)


def code(source: SourceFile, template: str) -> str:
    """Generated code in the file's own newline and indentation.

    Templates are written with ``\\n`` and four-space indentation.
    """
    lines = []
    for line in template.split("\n"):
        stripped = line.lstrip(" ")
        depth = (len(line) - len(stripped)) // 4
        lines.append(source.indent_unit * depth + stripped)
    return source.newline.join(lines)


_TRANSFORMERS: dict = {}


def _ExplicitIndent(unit: str) -> "cst.CSTTransformer":
    """Give generated blocks their indentation explicitly.

    A parsed block whose indent equals the parser's default stores None and is rendered
    with the indent of whatever module it ends up in; the snippets statements_edit
    parses infer theirs from the snippet's first line (often several levels deep), so a
    generated nested block would come out doubly indented.

    The class is defined on first use: subclassing needs libcst, which a check-only run
    never imports (zklint.lazy_import).
    """
    if "explicit_indent" not in _TRANSFORMERS:

        class ExplicitIndent(cst.CSTTransformer):
            def __init__(self, unit: str) -> None:
                super().__init__()
                self.unit = unit

            def leave_IndentedBlock(self, original_node, updated_node):
                if updated_node.indent is None:
                    return updated_node.with_changes(indent=self.unit)
                return updated_node

        _TRANSFORMERS["explicit_indent"] = ExplicitIndent
    return _TRANSFORMERS["explicit_indent"](unit)


def parse_statement(source: SourceFile, template: str) -> cst.BaseStatement:
    statement = cst.parse_statement(code(source, template) + source.newline, config=parser_config(source))
    return statement.visit(_ExplicitIndent(source.indent_unit))


def parse_expression(source: SourceFile, text: str) -> cst.BaseExpression:
    return cst.parse_expression(text, config=parser_config(source))


def expression_edit(
    source: SourceFile, node: ast.expr, transform: Callable[[cst.BaseExpression], cst.BaseExpression]
) -> Edit:
    """Rewrite one expression: parse exactly its text, transform, render it back."""
    start, end = source.node_span(node)
    try:
        tree = parse_expression(source, source.text[start:end])
    except cst.ParserSyntaxError as exc:
        raise FixError(f"cannot parse expression: {exc.message}") from None
    return Edit(start, end, render(source, transform(tree)))


# Forward references: libcst is imported lazily (zklint.lazy_import), not when this module loads.
StatementsTransform = Callable[[List["cst.BaseStatement"]], Sequence["cst.BaseStatement"]]


def with_block_indent(node: "cst.CSTNode", unit: str) -> "cst.CSTNode":
    """`node` with every indented block that has no explicit indent spelled with `unit`."""
    return node.visit(_ExplicitIndent(unit))


def statements_edit(source: SourceFile, stmts: Sequence[ast.stmt], transform: StatementsTransform) -> Edit:
    """Rewrite a run of consecutive sibling statements, whole lines at a time.

    The lines are parsed on their own with libcst: at the top level as a module, and
    when indented, as the body of an ``if True:`` wrapper so their indentation stays
    as it is. Statements sharing a line with others (``a; b``) are refused.
    """
    first, last = stmts[0], stmts[-1]
    # A decorated def or class starts at its first decorator's line, where `@` stands.
    decorators = getattr(first, "decorator_list", None) or []
    first_line = min([first.lineno] + [d.lineno for d in decorators])
    line_start = source.line_starts[first_line - 1]
    if first_line == first.lineno:
        indent = source.text[line_start:source.offset(first.lineno, first.col_offset)]
    else:
        line = source.line_text(first_line)
        indent = line[: len(line) - len(line.lstrip())]
        if not line.lstrip().startswith("@"):
            raise FixError("decorator does not start its line")
    if indent.strip():
        raise FixError("statement does not start its line")
    tail_line = source.line_text(last.end_lineno)
    tail = tail_line[source.char_col(last.end_lineno, last.end_col_offset):]
    if tail.strip() and not tail.lstrip().startswith("#"):
        raise FixError("statement shares its line with another")
    end = source.offset(last.end_lineno, 0) + len(tail_line) + len(source.line_ending(last.end_lineno))
    snippet = source.text[line_start:end]
    if not snippet.endswith(("\n", "\r")):
        snippet += source.newline
        added_newline = True
    else:
        added_newline = False
    config = parser_config(source)
    try:
        if indent:
            wrapper = _WRAPPER + source.newline
            module = cst.parse_module(wrapper + snippet, config=config)
            block = module.body[0].body
            new_body = list(transform(list(block.body)))
            wrapper_if = module.body[0].with_changes(body=block.with_changes(body=new_body))
            rendered = module.with_changes(body=[wrapper_if]).code
            rendered = rendered[len(wrapper):]
        else:
            module = cst.parse_module(snippet, config=config)
            rendered = module.with_changes(body=list(transform(list(module.body)))).code
    except cst.ParserSyntaxError as exc:
        raise FixError(f"cannot parse statement: {exc.message}") from None
    if added_newline and rendered.endswith(source.newline):
        rendered = rendered[: -len(source.newline)]
    return Edit(line_start, end, rendered)


def insert_lines_edit(source: SourceFile, before_line: int, lines: Iterable[str]) -> Edit:
    """Insert whole lines before line `before_line` (1-based; past the end appends)."""
    text = "".join(line + source.newline for line in lines)
    if before_line > len(source.line_starts):
        offset = len(source.text)
        if source.text and not source.text.endswith(("\n", "\r")):
            text = source.newline + text
    else:
        offset = source.line_starts[before_line - 1]
    return Edit(offset, offset, text)


# ---- imports ----------------------------------------------------------------------------

def _import_block(tree: ast.Module) -> List[ast.stmt]:
    """The module's leading run of imports (after the docstring)."""
    body = list(tree.body)
    start = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(
        body[0].value.value, str
    ):
        start = 1
    block = []
    for stmt in body[start:]:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            block.append(stmt)
        else:
            break
    return block


def _has_import(tree: ast.Module, wanted: Import) -> bool:
    for stmt in tree.body:
        if wanted.name is None and isinstance(stmt, ast.Import):
            if any(a.name == wanted.module and a.asname is None for a in stmt.names):
                return True
        elif wanted.name is not None and isinstance(stmt, ast.ImportFrom) and stmt.module == wanted.module:
            if stmt.level == 0 and any(a.name == wanted.name and a.asname in (None, wanted.name) for a in stmt.names):
                return True
    return False


def import_edits(source: SourceFile, tree: ast.Module, imports: Iterable[Import]) -> List[Edit]:
    """Edits adding the missing imports, placed and written as the file's own are."""
    edits: List[Edit] = []
    pending_lines: dict = {}
    extended: dict = {}
    block = _import_block(tree)
    for wanted in dict.fromkeys(imports):
        if _has_import(tree, wanted):
            continue
        if wanted.name is not None:
            # Extend an existing ``from module import a, b`` rather than add a second line.
            existing = next(
                (s for s in tree.body if isinstance(s, ast.ImportFrom) and s.module == wanted.module
                 and s.level == 0 and not any(a.name == "*" for a in s.names)),
                None,
            )
            if existing is not None:
                extended.setdefault(id(existing), (existing, []))[1].append(wanted.name)
                continue
            line_text = f"from {wanted.module} import {wanted.name}"
            top = wanted.module.split(".")[0]
            anchor = _anchor_after(
                block, lambda s, top=top: isinstance(s, ast.ImportFrom) and (s.module or "").split(".")[0] == top
            )
        else:
            line_text = f"import {wanted.module}"
            anchor = _plain_import_anchor(block, wanted.module)
        if anchor is None:
            anchor_line = _first_statement_line(source, tree)
        else:
            anchor_line = anchor
        pending_lines.setdefault(anchor_line, []).append(line_text)
    for existing, names in extended.values():
        edits.append(statements_edit(source, [existing], _add_names(names)))
    for line, texts in pending_lines.items():
        edits.append(insert_lines_edit(source, line, texts))
    return edits


def _add_names(names: List[str]) -> StatementsTransform:
    def transform(stmts):
        simple = stmts[0]
        node = simple.body[0]
        aliases = list(node.names)
        last = aliases[-1]
        trailing = last.comma
        aliases[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        for i, name in enumerate(names):
            comma = trailing if i == len(names) - 1 else cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
            aliases.append(cst.ImportAlias(name=cst.Name(name), comma=comma))
        return [simple.with_changes(body=[node.with_changes(names=aliases)])]

    return transform


def _anchor_after(block: List[ast.stmt], prefer: Callable[[ast.stmt], bool]) -> Optional[int]:
    """The line after the last preferred import, else after the whole block."""
    preferred = [s for s in block if prefer(s)]
    chosen = preferred[-1] if preferred else (block[-1] if block else None)
    return chosen.end_lineno + 1 if chosen is not None else None


def _plain_import_anchor(block: List[ast.stmt], module: str) -> Optional[int]:
    """Among plain ``import x`` lines, keep alphabetical order; else go first in the block."""
    plain = [s for s in block if isinstance(s, ast.Import)]
    for stmt in plain:
        if stmt.names[0].name > module:
            return stmt.lineno
    if plain:
        return plain[-1].end_lineno + 1
    return block[0].lineno if block else None


def _first_statement_line(source: SourceFile, tree: ast.Module) -> int:
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(
        body[0].value.value, str
    ):
        return body[0].end_lineno + 1
    if body:
        first = body[0]
        decorators = getattr(first, "decorator_list", [])
        return min([first.lineno] + [d.lineno for d in decorators])
    return len(source.line_starts) + 1


# ---- applying -----------------------------------------------------------------------------

def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    parts = []
    position = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        parts.append(text[position:edit.start])
        parts.append(edit.text)
        position = edit.end
    parts.append(text[position:])
    return "".join(parts)


@dataclass
class FixOutcome:
    text: str
    applied: List[Finding] = field(default_factory=list)
    remaining: List[Finding] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def fix_source(
    source: SourceFile,
    lint: Callable[[SourceFile], List[Finding]],
    applicable: Callable[[Finding], bool],
    findings: Optional[List[Finding]] = None,
) -> FixOutcome:
    """Apply every applicable fix, pass after pass, until nothing applicable remains.

    A fix whose builder fails (`FixError`, or a bug: any exception) is left unfixed, as
    is a pass whose result does not parse or cannot be re-linted; the text is then the
    last one that parsed and linted.
    """
    current = source
    outcome = FixOutcome(source.text)
    refused: Set[Tuple[str, int, int]] = set()
    if findings is None:  # the caller may pass the findings it already has for `source`
        findings = lint(current)
    for _ in range(MAX_PASSES):
        candidates = [
            f for f in findings
            if f.fix is not None and applicable(f) and (f.code, f.line, f.col) not in refused
        ]
        if not candidates:
            break
        taken: List[Edit] = []
        accepted: List[Finding] = []
        imports: List[Import] = []
        for finding in sorted(candidates, key=Finding.sort_key):
            try:
                edits = finding.fix.build(current)
                if edits:
                    _check_edits(current.text, edits)
            except FixError:
                edits = None
            except (RecursionError, MemoryError):
                where = f"{finding.code} fix at line {finding.line}"
                outcome.errors.append(f"{where}: too deeply nested to fix; left unfixed")
                edits = None
            except Exception as exc:  # a bug in one rule's fix must not lose the others
                where = f"{finding.code} fix at line {finding.line}"
                outcome.errors.append(f"{where} failed ({_describe(exc)}); left unfixed")
                edits = None
            if not edits or _self_overlapping(edits):
                refused.add((finding.code, finding.line, finding.col))
                continue
            if any(edits_overlap(edit, taken) for edit in edits):
                continue  # applied in a later pass, after a re-lint
            taken.extend(edits)
            accepted.append(finding)
            imports.extend(finding.fix.imports)
        if not accepted:
            break
        codes = ", ".join(sorted({f.code for f in accepted}))
        try:
            new_text = apply_edits(current.text, taken)
            tree = parse_module(new_text)
            if imports:
                staged = SourceFile(new_text, source.path, source.encoding)
                new_text = apply_edits(new_text, import_edits(staged, tree, imports))
                parse_module(new_text)
        except (SyntaxError, ValueError, FixError) as exc:
            outcome.errors.append(f"fix for {codes} would not parse ({_describe(exc)}); left unfixed")
            refused.update((f.code, f.line, f.col) for f in accepted)
            continue
        except (RecursionError, MemoryError):
            outcome.errors.append(f"fix for {codes} made the code too deeply nested to parse; left unfixed")
            refused.update((f.code, f.line, f.col) for f in accepted)
            continue
        candidate = SourceFile(new_text, source.path, source.encoding)
        try:
            new_findings = lint(candidate)
        except Exception as exc:
            outcome.errors.append(f"fixed code for {codes} could not be re-checked ({_describe(exc)}); left unfixed")
            refused.update((f.code, f.line, f.col) for f in accepted)
            continue
        current = candidate
        outcome.applied.extend(accepted)
        findings = new_findings
    else:
        if any(f.fix is not None and applicable(f) for f in findings):
            outcome.errors.append(f"fixes did not settle after {MAX_PASSES} passes")
    outcome.text = current.text
    outcome.remaining = findings
    return outcome


def _describe(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _check_edits(text: str, edits: Sequence[Edit]) -> None:
    for edit in edits:
        if not (0 <= edit.start <= edit.end <= len(text)) or not isinstance(edit.text, str):
            raise FixError(f"edit out of range: {edit.start}..{edit.end} of {len(text)}")


def _self_overlapping(edits: Sequence[Edit]) -> bool:
    """One fix's own edits must not overlap each other (insertions at one point may)."""
    return any(
        edit.start < other.end and other.start < edit.end
        for index, edit in enumerate(edits) for other in edits[:index]
    )


# ---- writing ------------------------------------------------------------------------------

def write_atomic(path: str, data: bytes) -> None:
    """Replace `path` with `data` so readers see the old file or the new one, never half of it.

    The new content goes to a temporary file in the same directory (same filesystem),
    is flushed and fsynced, gets the original's permission bits, and is renamed over
    the original. A symbolic link is followed: the file it points to is replaced and
    the link stays a link.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    info = os.stat(target)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(0, "not a regular file")
    import tempfile  # (here: with shutil, random, bz2 and lzma, some 8 ms no check-only run needs)

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".zklint-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
        if hasattr(os, "chown"):
            try:
                os.chown(tmp, info.st_uid, info.st_gid)
            except OSError:
                pass  # not ours to give away: the file keeps the writer's ownership
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _directory_lock(directory: str):
    """An advisory lock on a directory, so concurrent zklint runs rewrite a file one at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_fixed(path: str, original: bytes, data: bytes) -> Optional[str]:
    """Write fixed bytes over `path` if it still holds `original`. None, or why not (one line).

    Compare and replace happen under a lock on the directory, so several zklint
    processes fixing the same tree leave each file either as it was or fully fixed.
    A file that another run has already fixed to the same bytes counts as written.
    """
    try:
        target = os.path.realpath(path)
        with _directory_lock(os.path.dirname(target)):
            try:
                with open(target, "rb") as handle:
                    current = handle.read()
            except FileNotFoundError:
                return "disappeared while being fixed; not rewritten"
            if current == data:
                return None
            if current != original:
                return "changed while being fixed; left as it is"
            write_atomic(target, data)
    except OSError as exc:
        return f"cannot write: {exc.strerror or exc}"
    return None
