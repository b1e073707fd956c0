"""``zklint server``: the Language Server Protocol front end, over stdio.

Editors get zklint's findings as diagnostics while the code is typed, its fixes as quick
fixes (one finding, all safe findings as ``source.fixAll.zklint``, or a ``# noqa`` for one
line) and a rule's summary on hover. It is thin over the engine: every lint of an open
document goes through `ZkLintServer.check_document`, which calls `engine.check_bytes`
exactly as ``zklint check`` does, and every edit comes from the one fixer, so a quick fix
yields the bytes ``zklint check --fix`` would write.

Open documents' texts live in one dict keyed by filesystem path (`ZkLintServer.documents`).
A change re-lints, after a short debounce, the changed document first and then every
other open document of the same workspace, so facts one module gives another (a client
factory it defines) show in the modules that use it.

Needs the ``server`` extra (pygls and lsprotocol): ``pip install "zklint[server]"``.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import inspect
import io
import logging
import os
import tokenize
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from zklint import __version__
from zklint.checking import facts_for_file, refresh_file
from zklint.config import ConfigError, Settings, find_pyproject, load_settings
from zklint.docs import fix_label
from zklint.engine import FileReport, RuleSelection, UnknownSelector, check_bytes, internal_error, noqa_codes, noqa_span
from zklint.files import Excluder
from zklint.facts import ModuleFacts
from zklint.findings import Finding, Safety
from zklint.rules import all_rules
from zklint.rules.base import doc_pointer
from zklint.source import SourceFile

NAME = "zklint"
FIX_ALL_KIND = "source.fixAll.zklint"
FIX_ALL_TITLE = "Fix all safe zklint findings"
# The first change after a quiet spell is linted at once; changes coming within this
# window after a lint (a burst: a paste, a multi-cursor edit, fast typing) are folded into
# one lint at its end. A 1,000-line file lints in 20-40 ms on the bench machine.
DEBOUNCE_SECONDS = 0.03
# The generated rule pages (docs/rules/ZKnnn.md), where the package sits in a checkout.
DOCS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "rules")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenDocument:
    """One version of a document the editor has open; a change makes a new one."""

    uri: str
    path: str  # filesystem path (the URI itself for an unsaved, untitled buffer)
    text: str
    version: Optional[int]


@dataclass
class LintResult:
    """The findings of one document version (their fixes can still be built)."""

    document: OpenDocument
    report: FileReport
    source: SourceFile


@dataclass(frozen=True)
class ClientSettings:
    """What the editor's settings add to the project's ``[tool.zklint]``, as the CLI's flags do."""

    select: Optional[Tuple[str, ...]] = None  # replaces the project's select (like --select)
    extend_select: Tuple[str, ...] = ()  # like --extend-select
    ignore: Tuple[str, ...] = ()  # added to the project's ignore (like --ignore)
    unsafe_fixes: bool = True  # offer unsafe fixes as quick fixes (labelled unsafe)

    @classmethod
    def from_json(cls, value: Any) -> "ClientSettings":
        """From ``{"select": [...], "ignore": [...], "extendSelect": [...], "unsafeFixes": bool}``."""
        if not isinstance(value, dict):
            return cls()
        if isinstance(value.get(NAME), dict):  # {"zklint": {...}}, as didChangeConfiguration sends it
            value = value[NAME]
        if isinstance(value.get("settings"), dict):  # {"settings": {...}}, in initializationOptions
            value = value["settings"]
        select = _codes(value.get("select"))
        unsafe = value.get("unsafeFixes", value.get("unsafe-fixes", True))
        return cls(
            select=tuple(select) if select is not None else None,
            extend_select=tuple(_codes(value.get("extendSelect", value.get("extend-select"))) or ()),
            ignore=tuple(_codes(value.get("ignore")) or ()),
            unsafe_fixes=unsafe if isinstance(unsafe, bool) else True,
        )


def _codes(value: Any) -> Optional[List[str]]:
    """A list of codes, or one comma-separated string of them; None when not set."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return None
    return [str(part).strip().upper() for part in value if str(part).strip()]


class Configuration:
    """The settings of one project (one pyproject.toml, or none) with the editor's on top."""

    def __init__(self, settings: Settings, client: ClientSettings) -> None:
        self.settings = settings
        self.client = client
        self.excluder = Excluder(settings.root, settings.exclude + settings.extend_exclude, settings.respect_gitignore)
        self._rules: Dict[Tuple[str, ...], list] = {}
        self.stamp: Optional[tuple] = None  # the pyproject.toml's (mtime, size) when it was read

    def selection(self, ignored: Sequence[str] = ()) -> RuleSelection:
        """Raises UnknownSelector for a code the editor's settings name that no rule has."""
        client, settings = self.client, self.settings
        return RuleSelection(
            list(client.select) if client.select is not None else settings.select,
            settings.ignore + list(client.ignore),
            settings.extend_select + list(client.extend_select),
            per_file_ignore=ignored,
        )

    def rules_for(self, path: str) -> list:
        ignored = tuple(self.settings.ignored_for(path))
        if ignored not in self._rules:
            self._rules[ignored] = self.selection(ignored).rules()
        return self._rules[ignored]

    def excluded(self, path: str) -> bool:
        return os.path.isabs(path) and self.excluder.excluded_with_parents(path)


def file_stamp(path: Optional[str]) -> Optional[tuple]:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


def source_bytes(text: str) -> bytes:
    """The bytes the editor's text would have on disk, so the engine reads it as the CLI would.

    Encoded as its coding declaration says (PEP 263), else as UTF-8; text the declared
    encoding cannot hold stays UTF-8, and the engine reports it as it reports such a file.
    """
    raw = text.encode("utf-8", "surrogateescape")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError:
        return raw
    if encoding in ("utf-8", "utf-8-sig"):
        return raw
    try:
        return text.encode(encoding)
    except (UnicodeError, LookupError):
        return raw


def rule_page(code: str) -> Optional[str]:
    """The URI of the rule's generated page, when this installation has it (a checkout)."""
    page = os.path.join(DOCS_DIR, f"{code}.md")
    return from_fs_path(page) if os.path.isfile(page) else None


def without_doc_pointer(finding: Finding) -> str:
    """The message without its ``(zklint rule ZKnnn)`` tail: the editor links the page instead."""
    suffix = f" ({doc_pointer(finding.code)})"
    return finding.message[: -len(suffix)] if finding.message.endswith(suffix) else finding.message


def replacement(old: str, new: str) -> Tuple[int, int, str]:
    """One edit turning `old` into `new`: (start, end, text), on whole lines of `old`.

    Whole lines keep positions clear of a CRLF's middle and of UTF-16 arithmetic; the
    bytes outside the edit are those both texts share, so applying it gives `new` exactly.
    """
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    starts = SourceFile(old).line_starts
    start = starts[bisect.bisect_right(starts, prefix) - 1]
    end = len(old) - suffix
    index = bisect.bisect_left(starts, end)
    end = starts[index] if index < len(starts) else len(old)
    return start, end, new[start:len(new) - (len(old) - end)]


def _line_ends_inside_a_token(text: str, line: int) -> bool:
    """Would a comment appended to `line` land inside a string or after a backslash?"""
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.start[0] > line:
                return False
            if token.start[0] <= line < token.end[0] and token.type not in (tokenize.NEWLINE, tokenize.NL):
                return True
    except (tokenize.TokenError, SyntaxError):
        return True
    return False


F = TypeVar("F", bound=Callable[..., Any])


def guarded(default: Any = None) -> Callable[[F], F]:
    """An exception in a handler becomes one log message and `default`; the session goes on."""

    def decorate(handler: F) -> F:
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def run_async(server: "ZkLintServer", *args: Any) -> Any:
                try:
                    return await handler(server, *args)
                except Exception as exc:
                    server.log(types.MessageType.Error, internal_error(exc, f"in {handler.__name__}"))
                    return default

            return run_async  # type: ignore[return-value]

        @functools.wraps(handler)
        def run(server: "ZkLintServer", *args: Any) -> Any:
            try:
                return handler(server, *args)
            except Exception as exc:
                server.log(types.MessageType.Error, internal_error(exc, f"in {handler.__name__}"))
                return default

        return run  # type: ignore[return-value]

    return decorate


class ZkLintServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(NAME, __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.documents: Dict[str, OpenDocument] = {}  # every open document's latest text, by path
        self.results: Dict[str, LintResult] = {}
        self.client_settings = ClientSettings()
        self._configurations: Dict[Optional[str], Configuration] = {}
        self._config_paths: Dict[str, Optional[str]] = {}  # directory -> its pyproject.toml
        self._reported: Dict[str, str] = {}  # path -> the last problem logged for it
        self._pending: Dict[str, None] = {}  # paths to re-lint, in order (an ordered set)
        self._timer: Optional[asyncio.TimerHandle] = None
        self._linted_at: Dict[str, float] = {}  # path -> when its last lint ended (loop time)
        self._drain: Optional[asyncio.Future] = None
        self._fixes: Dict[Tuple[str, Optional[int], str, int, int], Optional[types.TextEdit]] = {}
        self._facts: Dict[str, Optional[ModuleFacts]] = {}  # path -> the project's facts for its open text

    # ---- talking to the client ------------------------------------------------------------

    def log(self, kind: types.MessageType, message: str) -> None:
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=f"zklint: {message}"))
        except Exception:  # the client is gone: nothing left to tell
            log.warning("%s", message)

    def report_server_error(self, error: Exception, source: Any) -> None:
        # pygls' default shows a pop-up; a problem in the server is a log line, not an interruption.
        self.log(types.MessageType.Error, internal_error(error, "in the server"))

    @property
    def codec(self):
        return self.workspace.position_codec

    # ---- configuration ---------------------------------------------------------------------

    def configuration(self, path: str) -> Configuration:
        directory = os.path.dirname(path) if os.path.isabs(path) else os.getcwd()
        if directory not in self._config_paths:
            self._config_paths[directory] = find_pyproject(directory)
        config_path = self._config_paths[directory]
        stamp = file_stamp(config_path)
        cached = self._configurations.get(config_path)
        # Also noticed without the client's file watching: the file's stamp changed.
        if cached is None or cached.stamp != stamp:
            cached = self._configurations[config_path] = self._load_configuration(config_path, directory)
            cached.stamp = stamp
        return cached

    def _load_configuration(self, config_path: Optional[str], directory: str) -> Configuration:
        try:
            settings = load_settings(config_path, start=directory)
        except ConfigError as exc:
            self.log(types.MessageType.Error, f"{exc}; using the default settings")
            settings = load_settings(None, start=os.sep)
        configuration = Configuration(settings, self.client_settings)
        try:
            configuration.selection()
        except UnknownSelector as exc:
            self.log(types.MessageType.Error, f"editor settings: {exc}; using the project's selection")
            configuration = Configuration(settings, ClientSettings(unsafe_fixes=self.client_settings.unsafe_fixes))
        return configuration

    def reload_configuration(self) -> None:
        """Forget every loaded setting (a pyproject.toml or the editor's settings changed); re-lint."""
        self._configurations.clear()
        self._config_paths.clear()
        self.results.clear()
        self._fixes.clear()
        self.schedule(list(self.documents), delay=0)

    # ---- linting ---------------------------------------------------------------------------

    def check_document(self, document: OpenDocument, fix: bool = False) -> FileReport:
        """Every lint of an open document goes through here: the CLI's `check_bytes` on its text."""
        configuration = self.configuration(document.path)
        if configuration.excluded(document.path):
            return FileReport(document.path)
        rules = configuration.rules_for(document.path)
        raw = source_bytes(document.text)
        if self.documents.get(document.path) is document:
            # the project layer, kept in memory with the open documents' texts: an edit of a
            # factory in one module changes the findings of the modules that use it
            self._facts[document.path] = facts_for_file(document.path, raw)
        # a fix being tried (another text of the same file) is linted with the facts of the
        # document as it is, as `zklint check --fix` re-lints with the facts it started from
        facts = self._facts.get(document.path)
        return check_bytes(raw, document.path, rules, configuration.settings.options, fix=fix, facts=facts)

    def result(self, document: OpenDocument) -> LintResult:
        """The findings of exactly this version of the document (linted now if not yet)."""
        cached = self.results.get(document.path)
        if cached is not None and cached.document is document:
            return cached
        result = LintResult(document, self.check_document(document), SourceFile(document.text, document.path))
        self._linted_at[document.path] = asyncio.get_running_loop().time()
        self.results[document.path] = result
        return result

    def workspace_of(self, path: str) -> str:
        """The workspace folder holding `path` (the deepest), else its project's root."""
        folders = [to_fs_path(folder.uri) for folder in self.workspace.folders.values()]
        if self.workspace.root_path:
            folders.append(self.workspace.root_path)
        holding = [f for f in folders if f and (path == f or path.startswith(f.rstrip(os.sep) + os.sep))]
        if holding:
            return max(holding, key=len)
        return self.configuration(path).settings.root

    def schedule(self, paths: Iterable[str], delay: float = DEBOUNCE_SECONDS) -> None:
        """Re-lint `paths` (in this order, ahead of those already waiting) after `delay`."""
        first = list(dict.fromkeys(paths))
        rest = [path for path in self._pending if path not in first]
        self._pending = dict.fromkeys(first + rest)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._start_draining)

    def schedule_workspace(self, path: str, delay: Optional[float] = None) -> None:
        """Re-lint `path`, then every other open document of its workspace (debounced by default)."""
        if delay is None:
            quiet = asyncio.get_running_loop().time() - self._linted_at.get(path, float("-inf")) >= DEBOUNCE_SECONDS
            delay = 0 if quiet and self._timer is None else DEBOUNCE_SECONDS
        neighbours = self.neighbours(path)
        for other in neighbours:
            # their own text did not change, but the project's facts from this one may have
            self.results.pop(other, None)
        self.schedule([path] + neighbours, delay)

    def neighbours(self, path: str) -> List[str]:
        """The other open documents of `path`'s workspace: their findings may depend on its text."""
        workspace = self.workspace_of(path)
        return [other for other in self.documents if other != path and self.workspace_of(other) == workspace]

    def _start_draining(self) -> None:
        self._timer = None
        if self._drain is None or self._drain.done():
            self._drain = asyncio.ensure_future(self._publish_pending())

    async def _publish_pending(self) -> None:
        while self._pending:
            path = next(iter(self._pending))
            del self._pending[path]
            self.publish(path)
            await asyncio.sleep(0)  # take in the messages that arrived meanwhile (a newer text)

    def publish(self, path: str) -> None:
        """Lint the document's latest text and publish its diagnostics."""
        document = self.documents.get(path)
        if document is None:
            return
        try:
            result = self.result(document)
            diagnostics = self.diagnostics(result)
        except Exception as exc:  # a bug in zklint: this file gets no diagnostics, the others go on
            self.log(types.MessageType.Error, f"{path}: {internal_error(exc)}")
            diagnostics = []
        if self.documents.get(path) is not document:
            return  # closed or changed meanwhile: these findings are stale, the next lint publishes
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=document.uri, diagnostics=diagnostics, version=document.version)
        )

    def diagnostics(self, result: LintResult) -> List[types.Diagnostic]:
        errors = result.report.errors
        problem = "; ".join(errors)
        if problem and self._reported.get(result.document.path) != problem:
            internal = any(error.startswith("internal error") for error in errors)
            kind = types.MessageType.Error if internal else types.MessageType.Log
            self.log(kind, f"{result.document.path}: {problem}")
        self._reported[result.document.path] = problem
        if errors:
            return []  # unparsable, or an internal error: no findings rather than wrong ones
        return [self.diagnostic(result.source, finding) for finding in result.report.findings]

    def diagnostic(self, source: SourceFile, finding: Finding) -> types.Diagnostic:
        rule = all_rules()[finding.code]
        page = rule_page(finding.code)
        data: Dict[str, Any] = {"rule": rule.name}
        if finding.fix is not None:
            data["fix"] = {"title": finding.fix.title, "safety": finding.fix.safety.value}
        return types.Diagnostic(
            range=self.range(source, finding),
            message=without_doc_pointer(finding),
            severity=types.DiagnosticSeverity.Warning,
            code=finding.code,
            code_description=types.CodeDescription(href=page) if page else None,
            source=NAME,
            data=data,
        )

    # ---- positions ---------------------------------------------------------------------------

    def position(self, source: SourceFile, line: int, col: int) -> types.Position:
        """An LSP position (0-based line, the client's code units) of a 1-based line and character column."""
        return types.Position(line=line - 1, character=self.codec.client_num_units(source.line_text(line)[:col]))

    def range(self, source: SourceFile, finding: Finding) -> types.Range:
        return types.Range(
            start=self.position(source, finding.line, finding.col),
            end=self.position(source, finding.end_line, finding.end_col),
        )

    def offset_position(self, source: SourceFile, offset: int) -> types.Position:
        starts = source.line_starts
        index = bisect.bisect_right(starts, offset) - 1
        return self.position(source, index + 1, offset - starts[index])

    def character(self, source: SourceFile, position: types.Position) -> Tuple[int, int]:
        """(1-based line, character column) of an LSP position."""
        line = min(position.line + 1, len(source.line_starts))
        text = source.line_text(line)
        units = 0
        for index, char in enumerate(text):
            if units >= position.character:
                return line, index
            units += self.codec.client_num_units(char)
        return line, len(text)

    def text_edit(self, source: SourceFile, new_text: str) -> types.TextEdit:
        start, end, text = replacement(source.text, new_text)
        return types.TextEdit(
            range=types.Range(start=self.offset_position(source, start), end=self.offset_position(source, end)),
            new_text=text,
        )

    # ---- code actions --------------------------------------------------------------------------

    def workspace_edit(self, document: OpenDocument, edits: List[types.TextEdit]) -> types.WorkspaceEdit:
        capabilities = self.client_capabilities.workspace
        edit_capabilities = capabilities.workspace_edit if capabilities else None
        if edit_capabilities is not None and edit_capabilities.document_changes:
            identifier = types.OptionalVersionedTextDocumentIdentifier(uri=document.uri, version=document.version)
            return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=identifier, edits=edits)])
        return types.WorkspaceEdit(changes={document.uri: edits})

    def fix_edit(self, result: LintResult, finding: Finding) -> Optional[types.TextEdit]:
        """The edit of one finding's fix: the fixer's pass for that finding alone (cached per version)."""
        from zklint.fixer import FixError, fix_source

        document = result.document
        key = (document.path, document.version, finding.code, finding.line, finding.col)
        if key not in self._fixes:
            def relint(source: SourceFile) -> List[Finding]:
                report = self.check_document(OpenDocument(document.uri, document.path, source.text, document.version))
                if report.errors:
                    raise FixError(report.errors[0])
                return report.findings

            outcome = fix_source(result.source, relint, lambda f: f is finding, [finding])
            for error in outcome.errors:
                self.log(types.MessageType.Warning, f"{document.path}: {error}")
            # Edits of older versions can no longer be asked for: keep this version's only.
            self._fixes = {k: edit for k, edit in self._fixes.items() if k[0] != key[0] or k[1] == key[1]}
            self._fixes[key] = self.text_edit(result.source, outcome.text) if outcome.changed else None
        return self._fixes[key]

    def fix_all_edit(self, document: OpenDocument) -> Optional[types.TextEdit]:
        """Every safe fix, exactly as ``zklint check --fix`` applies them."""
        report = self.check_document(document, fix=True)
        for error in report.errors:
            self.log(types.MessageType.Warning, f"{document.path}: {error}")
        if report.new_text is None:
            return None
        return self.text_edit(SourceFile(document.text, document.path), report.new_text)

    def noqa_edit(self, source: SourceFile, finding: Finding) -> Optional[types.TextEdit]:
        """``# noqa: CODE`` at the end of the finding's line, or CODE added to the noqa already there."""
        line = source.line_text(finding.line)
        span = noqa_span(line)
        if span is not None:
            if not noqa_codes(line):
                return None  # a bare `# noqa` already silences everything
            start = end = span[1]
            text = f", {finding.code}"
        else:
            if line.rstrip().endswith("\\") or _line_ends_inside_a_token(source.text, finding.line):
                return None  # a comment there would end a string or break a continuation
            start, end = len(line.rstrip()), len(line)
            text = f"  # noqa: {finding.code}"
        return types.TextEdit(
            range=types.Range(
                start=self.position(source, finding.line, start), end=self.position(source, finding.line, end)
            ),
            new_text=text,
        )

    def code_actions(self, document: OpenDocument, wanted: types.Range, only: Optional[List[str]]) -> list:
        def asked(kind: str) -> bool:
            return only is None or any(kind == k or kind.startswith(k + ".") for k in only)

        result = self.result(document)
        if result.report.errors:
            return []
        source = result.source
        actions: List[types.CodeAction] = []
        if asked(types.CodeActionKind.QuickFix):
            # Every finding on the lines asked about: the light bulb shows wherever the cursor is on them.
            first, last = wanted.start.line + 1, wanted.end.line + 1
            for finding in result.report.findings:
                if finding.end_line < first or finding.line > last:
                    continue
                diagnostic = self.diagnostic(source, finding)
                fix = finding.fix
                if fix is not None and (fix.safety is Safety.SAFE or self.client_settings.unsafe_fixes):
                    edit = self.fix_edit(result, finding)
                    if edit is not None:
                        unsafe = " (unsafe fix)" if fix.safety is Safety.UNSAFE else ""
                        actions.append(types.CodeAction(
                            title=f"{finding.code}: {fix.title}{unsafe}",
                            kind=types.CodeActionKind.QuickFix,
                            diagnostics=[diagnostic],
                            is_preferred=fix.safety is Safety.SAFE,
                            edit=self.workspace_edit(document, [edit]),
                        ))
                noqa = self.noqa_edit(source, finding)
                if noqa is not None:
                    actions.append(types.CodeAction(
                        title=f"Suppress {finding.code} on this line",
                        kind=types.CodeActionKind.QuickFix,
                        diagnostics=[diagnostic],
                        edit=self.workspace_edit(document, [noqa]),
                    ))
        safe = any(f.fix is not None and f.fix.safety is Safety.SAFE for f in result.report.findings)
        if safe and asked(FIX_ALL_KIND):
            action = types.CodeAction(title=FIX_ALL_TITLE, kind=FIX_ALL_KIND)
            if only is None and self.resolves_edits():
                # Listed with the quick fixes at every cursor move: the whole-file fix is
                # computed only if it is chosen (codeAction/resolve).
                action.data = {"uri": document.uri, "version": document.version}
                actions.append(action)
            else:
                action = self.resolve_fix_all(action, document)
                if action.edit is not None:
                    actions.append(action)
        return actions

    def resolves_edits(self) -> bool:
        text_document = self.client_capabilities.text_document
        code_action = text_document.code_action if text_document else None
        resolve = code_action.resolve_support if code_action else None
        return resolve is not None and "edit" in resolve.properties

    def resolve_fix_all(self, action: types.CodeAction, document: Optional[OpenDocument]) -> types.CodeAction:
        """The fix-all action with its edit, when `document` is still the version it was offered for."""
        if document is not None:
            edit = self.fix_all_edit(document)
            if edit is not None:
                action.edit = self.workspace_edit(document, [edit])
        return action

    # ---- hover -------------------------------------------------------------------------------

    def hover(self, document: OpenDocument, position: types.Position) -> Optional[types.Hover]:
        result = self.result(document)
        if result.report.errors:
            return None
        where = self.character(result.source, position)
        found = [f for f in result.report.findings if (f.line, f.col) <= where <= (f.end_line, f.end_col)]
        if not found:
            return None
        registry = all_rules()
        sections = []
        for code in dict.fromkeys(f.code for f in found):
            rule = registry[code]
            page = rule_page(code)
            more = f"[docs]({page}) · " if page else ""
            sections.append(
                f"**{code}** `{rule.name}` ({fix_label(rule)})\n\n{rule.summary.strip()}\n\n{rule.why.strip()}"
                f"\n\n{more}`{doc_pointer(code)}`"
            )
        first = min(found, key=Finding.sort_key)
        last = max(found, key=lambda f: (f.end_line, f.end_col))
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n---\n\n".join(sections)),
            range=types.Range(
                start=self.position(result.source, first.line, first.col),
                end=self.position(result.source, last.end_line, last.end_col),
            ),
        )

    # ---- documents -----------------------------------------------------------------------------

    def document(self, uri: str) -> Optional[OpenDocument]:
        return self.documents.get(to_fs_path(uri) or uri)

    def update(self, uri: str) -> OpenDocument:
        """Take the document's text as pygls' workspace now holds it (after incremental changes)."""
        text_document = self.workspace.get_text_document(uri)
        path = to_fs_path(uri) or uri
        document = OpenDocument(uri, path, text_document.source, text_document.version)
        self.documents[path] = document
        return document

    def close(self, uri: str) -> None:
        """Forget the document and clear its diagnostics; its workspace is re-linted without its text."""
        path = to_fs_path(uri) or uri
        self.documents.pop(path, None)
        self.results.pop(path, None)
        self._pending.pop(path, None)
        self._reported.pop(path, None)
        self._linted_at.pop(path, None)
        self._fixes = {key: edit for key, edit in self._fixes.items() if key[0] != path}
        self._facts.pop(path, None)
        refresh_file(path)  # the project sees the file as it is on disk again
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        neighbours = self.neighbours(path)
        if neighbours:
            self.schedule(neighbours)


def build_server() -> ZkLintServer:
    server = ZkLintServer()

    @server.feature(types.INITIALIZE)
    @guarded()
    def initialize(ls: ZkLintServer, params: types.InitializeParams) -> None:
        ls.client_settings = ClientSettings.from_json(params.initialization_options)

    @server.feature(types.INITIALIZED)
    @guarded()
    async def initialized(ls: ZkLintServer, params: types.InitializedParams) -> None:
        workspace = ls.client_capabilities.workspace
        watched = workspace.did_change_watched_files if workspace else None
        if watched is not None and watched.dynamic_registration:
            watch = types.DidChangeWatchedFilesRegistrationOptions(
                watchers=[types.FileSystemWatcher(glob_pattern="**/pyproject.toml")]
            )
            await ls.client_register_capability_async(types.RegistrationParams(registrations=[types.Registration(
                id="zklint-pyproject", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=watch,
            )]))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @guarded()
    def did_open(ls: ZkLintServer, params: types.DidOpenTextDocumentParams) -> None:
        document = ls.update(params.text_document.uri)
        ls.schedule([document.path], delay=0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @guarded()
    def did_change(ls: ZkLintServer, params: types.DidChangeTextDocumentParams) -> None:
        document = ls.update(params.text_document.uri)
        ls.schedule_workspace(document.path)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    @guarded()
    def did_save(ls: ZkLintServer, params: types.DidSaveTextDocumentParams) -> None:
        document = ls.document(params.text_document.uri)
        if document is not None:
            ls.schedule_workspace(document.path, delay=0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    @guarded()
    def did_close(ls: ZkLintServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.close(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    @guarded()
    def did_change_watched_files(ls: ZkLintServer, params: types.DidChangeWatchedFilesParams) -> None:
        if any(os.path.basename(to_fs_path(change.uri) or "") == "pyproject.toml" for change in params.changes):
            ls.reload_configuration()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    @guarded()
    async def did_change_configuration(ls: ZkLintServer, params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        workspace = ls.client_capabilities.workspace
        if not settings and workspace is not None and workspace.configuration:
            # The client says only that something changed: ask it for the zklint section.
            items = [types.ConfigurationItem(section=NAME)]
            answer = await ls.workspace_configuration_async(types.ConfigurationParams(items=items))
            settings = answer[0] if answer else None
        ls.client_settings = ClientSettings.from_json(settings)
        ls.reload_configuration()

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, FIX_ALL_KIND], resolve_provider=True),
    )
    @guarded(default=[])
    def code_action(ls: ZkLintServer, params: types.CodeActionParams) -> list:
        document = ls.document(params.text_document.uri)
        if document is None:
            return []
        return ls.code_actions(document, params.range, params.context.only)

    @server.feature(types.CODE_ACTION_RESOLVE)
    @guarded()
    def code_action_resolve(ls: ZkLintServer, action: types.CodeAction) -> types.CodeAction:
        data = action.data if isinstance(action.data, dict) else {}
        document = ls.document(str(data.get("uri", "")))
        if action.kind != FIX_ALL_KIND or document is None or document.version != data.get("version"):
            return action  # edited since it was offered: no edit rather than a stale one
        return ls.resolve_fix_all(action, document)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @guarded()
    def hover(ls: ZkLintServer, params: types.HoverParams) -> Optional[types.Hover]:
        document = ls.document(params.text_document.uri)
        return None if document is None else ls.hover(document, params.position)

    return server


def serve() -> int:
    """Run the server on stdin/stdout until the client says exit."""
    build_server().start_io()
    return 0
