"""``zklint server`` end to end: pygls' own LSP client drives the real server over stdio.

Each test starts ``python -m zklint server`` as an editor would, opens and edits
documents, and checks what comes back: diagnostics, code actions (whose edits are
applied and compared byte for byte with ``zklint check --fix``), hover, settings,
broken files, shutdown and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

import pytest

pytest.importorskip("pygls", reason="the server extra (pygls) is not installed")
pytest.importorskip("pytest_asyncio", reason="pytest-asyncio is not installed")

from lsprotocol import types  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402
from pygls.uris import from_fs_path  # noqa: E402

from tests.cli_support import clean_env, run, zklint_command  # noqa: E402

TIMEOUT = 20.0

# ZK401 on line 7 (safe fix: max_tries=-1), ZK301 on line 17 (no fix for this shape),
# ZK202 on line 20 (safe fix: add close()).
SAMPLE = '''\
"""Leader election for the scheduler."""
import time

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

RETRY = KazooRetry(max_tries=3, delay=0.5)


class Scheduler:
    def __init__(self, hosts):
        self.zk = KazooClient(hosts=hosts, connection_retry=RETRY)
        self.zk.add_listener(self.on_state)
        self.zk.start()

    def on_state(self, state):
        time.sleep(1)

    def shutdown(self):
        self.zk.stop()
'''

# ZK102 on line 10 (unsafe fix: a listener re-creates the node, with an import) and
# ZK201 on line 8 (a module-level client never stopped).
UNSAFE_SAMPLE = '''\
import sys
import time

import kazoo.client as kc

if __name__ == "__main__":
    zk = kc.KazooClient(hosts=sys.argv[1])
    zk.start()
    node = "/cluster/members/" + sys.argv[2]
    zk.create(node, b"alive", ephemeral=True)
    while True:
        time.sleep(60)
'''


def retry_lines(count: int) -> str:
    """A module with `count` ZK401 findings, one per line from line 3 on."""
    body = "".join(
        f"zk{i} = KazooClient(hosts='h', connection_retry=KazooRetry(max_tries={i + 1}))\n" for i in range(count)
    )
    return "from kazoo.client import KazooClient\nfrom kazoo.retry import KazooRetry\n" + body


class Editor:
    """What an editor does with a language server, through pygls' real client over stdio."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.client = LanguageClient("zklint-tests", "1")
        self.published: List[types.PublishDiagnosticsParams] = []
        self.logs: List[types.LogMessageParams] = []
        self.registrations: List[types.Registration] = []
        self.settings: Any = None  # the answer to workspace/configuration
        self.versions: Dict[str, int] = {}

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
            self.published.append(params)

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def on_log(params: types.LogMessageParams) -> None:
            self.logs.append(params)

        @self.client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def on_register(params: types.RegistrationParams) -> None:
            self.registrations.extend(params.registrations)

        @self.client.feature(types.WORKSPACE_CONFIGURATION)
        def on_configuration(params: types.ConfigurationParams) -> list:
            return [self.settings for _ in params.items]

    async def start(
        self, initialization_options: Any = None, command: Optional[List[str]] = None
    ) -> types.InitializeResult:
        command = command or zklint_command() + ["server"]
        await self.client.start_io(*command, env=clean_env(), cwd=str(self.root))
        capabilities = types.ClientCapabilities(
            workspace=types.WorkspaceClientCapabilities(
                configuration=True,
                workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True),
                did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True),
            ),
            text_document=types.TextDocumentClientCapabilities(code_action=types.CodeActionClientCapabilities(
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]),
            )),
        )
        result = await self.client.initialize_async(types.InitializeParams(
            capabilities=capabilities,
            root_uri=from_fs_path(str(self.root)),
            workspace_folders=[types.WorkspaceFolder(uri=from_fs_path(str(self.root)), name="project")],
            initialization_options=initialization_options,
        ))
        self.client.initialized(types.InitializedParams())
        return result

    async def stop(self) -> Optional[int]:
        if self.client._server is not None and self.client._server.returncode is None:
            await self.client.shutdown_async(None)
            self.client.exit(None)
        await self.client.stop()
        return self.client._server.returncode if self.client._server is not None else None

    def open(self, name: str, text: str) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        uri = from_fs_path(str(path))
        self.versions[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        ))
        return uri

    def change(self, uri: str, text: str) -> int:
        """Replace the whole text; returns the new version."""
        self.versions[uri] += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        ))
        return self.versions[uri]

    def edit(self, uri: str, start: types.Position, end: types.Position, text: str) -> int:
        """An incremental change, as editors send while typing; returns the new version."""
        self.versions[uri] += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            content_changes=[
                types.TextDocumentContentChangePartial(range=types.Range(start=start, end=end), text=text)
            ],
        ))
        return self.versions[uri]

    async def wait_for(self, condition: Callable[[], Any], what: str) -> Any:
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            value = condition()
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; logs: {[m.message for m in self.logs]}")
            await asyncio.sleep(0.01)

    async def diagnostics(self, uri: str, version: Optional[int] = None) -> List[types.Diagnostic]:
        """The diagnostics published for `uri` at `version` (default: its latest)."""
        version = self.versions[uri] if version is None else version

        def published() -> Optional[types.PublishDiagnosticsParams]:
            for params in reversed(self.published):
                if params.uri == uri and params.version == version:
                    return params
            return None

        return list((await self.wait_for(published, f"diagnostics of {uri} v{version}")).diagnostics)

    async def actions(self, uri: str, line: int, character: int = 0, only: Optional[List[str]] = None) -> list:
        position = types.Position(line=line, character=character)
        diagnostics = [d for d in await self.diagnostics(uri) if d.range.start.line <= line <= d.range.end.line]
        return await self.client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start=position, end=position),
            context=types.CodeActionContext(diagnostics=diagnostics, only=only),
        )) or []


@contextlib.asynccontextmanager
async def editor(
    root: Path, initialization_options: Any = None, command: Optional[List[str]] = None
) -> AsyncIterator[Editor]:
    session = Editor(root)
    await session.start(initialization_options, command)
    try:
        yield session
    finally:
        await session.stop()


def apply(text: str, edits: List[types.TextEdit]) -> str:
    """Apply LSP text edits (UTF-16 positions, as the client negotiated by default)."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(position: types.Position) -> int:
        if position.line >= len(lines):
            return len(text)
        line = lines[position.line]
        units = index = 0
        while index < len(line) and units < position.character:
            units += 2 if ord(line[index]) > 0xFFFF else 1
            index += 1
        return starts[position.line] + index

    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        text = text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end):]
    return text


def edits_of(action: types.CodeAction, uri: str) -> List[types.TextEdit]:
    changes = action.edit.document_changes
    assert changes and len(changes) == 1 and changes[0].text_document.uri == uri
    return list(changes[0].edits)


def cli_fixed(tmp_path: Path, text: str, *flags: str) -> str:
    """What ``zklint check --fix`` writes for a file holding `text`."""
    target = tmp_path / "cli" / "module.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text.encode())
    run(zklint_command() + ["check", "--fix", *flags, str(target)], cwd=tmp_path)
    return target.read_bytes().decode()


def codes(diagnostics: List[types.Diagnostic]) -> List[tuple]:
    return [(d.code, d.range.start.line + 1) for d in diagnostics]


@pytest.mark.asyncio
async def test_diagnostics_follow_open_change_and_close(tmp_path: Path) -> None:
    async with editor(tmp_path) as session:
        uri = session.open("scheduler.py", SAMPLE)
        diagnostics = await session.diagnostics(uri)
        assert codes(diagnostics) == [("ZK401", 7), ("ZK301", 17), ("ZK202", 20)]
        retry = diagnostics[0]
        assert retry.range == types.Range(start=types.Position(6, 8), end=types.Position(6, 42))
        assert retry.severity == types.DiagnosticSeverity.Warning
        assert retry.source == "zklint"
        assert retry.data["rule"] == "finite-connection-retry"
        assert retry.data["fix"]["safety"] == "safe"
        assert retry.message.startswith("connection retry can give up (max_tries=3")
        assert "zklint rule ZK401" not in retry.message  # the editor links the page instead
        assert retry.code_description.href.endswith("/docs/rules/ZK401.md")

        # An incremental change (as typed): max_tries=3 -> max_tries=-1 removes ZK401.
        version = session.edit(uri, types.Position(6, 29), types.Position(6, 30), "-1")
        assert codes(await session.diagnostics(uri, version)) == [("ZK301", 17), ("ZK202", 20)]

        # Saving lints again (same text, same findings); closing clears them.
        count = len(session.published)
        session.client.text_document_did_save(types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)
        ))
        await session.wait_for(lambda: len(session.published) > count, "diagnostics after save")
        assert codes(session.published[-1].diagnostics) == [("ZK301", 17), ("ZK202", 20)]
        session.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)
        ))
        await session.wait_for(
            lambda: session.published[-1].uri == uri and not session.published[-1].diagnostics, "cleared diagnostics"
        )


@pytest.mark.asyncio
async def test_the_latest_text_wins(tmp_path: Path) -> None:
    async with editor(tmp_path) as session:
        uri = session.open("retries.py", retry_lines(1))
        assert len(await session.diagnostics(uri)) == 1
        # A burst of changes: version v has v findings. Whatever gets published must be
        # the findings of the version it names, versions never go back, and the last
        # published is the last text.
        for count in range(2, 8):
            session.change(uri, retry_lines(count))
        final = await session.diagnostics(uri, 7)
        assert len(final) == 7
        mine = [p for p in session.published if p.uri == uri]
        assert [p.version for p in mine] == sorted(p.version for p in mine)
        for params in mine:
            assert len(params.diagnostics) == params.version
        assert len(mine) < 7  # the burst was debounced, not linted change by change


@pytest.mark.asyncio
async def test_quick_fix_is_the_cli_fix_for_that_finding(tmp_path: Path) -> None:
    async with editor(tmp_path) as session:
        uri = session.open("scheduler.py", SAMPLE)
        await session.diagnostics(uri)
        actions = await session.actions(uri, line=6, character=12)
        fix = next(a for a in actions if a.title.startswith("ZK401: "))
        assert fix.kind == types.CodeActionKind.QuickFix and fix.is_preferred
        assert "unsafe" not in fix.title
        assert [d.code for d in fix.diagnostics] == ["ZK401"]
        fixed = apply(SAMPLE, edits_of(fix, uri))
        # The CLI fixing this finding alone (the file's only ZK401) writes the same bytes.
        assert fixed == cli_fixed(tmp_path, SAMPLE, "--select", "ZK401")
        assert fixed == SAMPLE.replace("max_tries=3", "max_tries=-1")


@pytest.mark.asyncio
async def test_unsafe_quick_fix_is_labelled_and_matches_unsafe_fixes(tmp_path: Path) -> None:
    async with editor(tmp_path) as session:
        uri = session.open("register.py", UNSAFE_SAMPLE)
        assert codes(await session.diagnostics(uri)) == [("ZK201", 8), ("ZK102", 10)]
        fix = next(a for a in await session.actions(uri, line=9) if a.title.startswith("ZK102: "))
        assert fix.title.endswith("(unsafe fix)") and not fix.is_preferred
        fixed = apply(UNSAFE_SAMPLE, edits_of(fix, uri))
        assert fixed == cli_fixed(tmp_path, UNSAFE_SAMPLE, "--unsafe-fixes", "--select", "ZK102")
        assert "import threading\n" in fixed and "zk.add_listener(recreate_node)" in fixed
        assert cli_fixed(tmp_path, UNSAFE_SAMPLE, "--select", "ZK102") == UNSAFE_SAMPLE  # plain --fix leaves it

    # With unsafe fixes turned off in the editor's settings, only the noqa action is left.
    async with editor(tmp_path, {"settings": {"unsafeFixes": False}}) as session:
        uri = session.open("register.py", UNSAFE_SAMPLE)
        await session.diagnostics(uri)
        actions = await session.actions(uri, line=9)
        assert [a.title for a in actions if a.kind == types.CodeActionKind.QuickFix] == ["Suppress ZK102 on this line"]


@pytest.mark.asyncio
async def test_fix_all_is_the_cli_fix(tmp_path: Path) -> None:
    async with editor(tmp_path) as session:
        uri = session.open("scheduler.py", SAMPLE)
        await session.diagnostics(uri)
        # What an editor sends on save with codeActionsOnSave = source.fixAll.
        actions = await session.actions(uri, line=0, only=[types.CodeActionKind.SourceFixAll])
        assert [(a.title, a.kind) for a in actions] == [("Fix all safe zklint findings", "source.fixAll.zklint")]
        fixed = apply(SAMPLE, edits_of(actions[0], uri))
        assert fixed == cli_fixed(tmp_path, SAMPLE)
        assert fixed != SAMPLE
        # In the light bulb's list it comes without its edit, computed when chosen.
        listed = next(a for a in await session.actions(uri, line=6) if a.kind == "source.fixAll.zklint")
        assert listed.edit is None
        resolved = await session.client.code_action_resolve_async(listed)
        assert apply(SAMPLE, edits_of(resolved, uri)) == fixed
        # Applied, the editor sends the new text: only the unfixable finding is left.
        version = session.change(uri, fixed)
        assert codes(await session.diagnostics(uri, version)) == [("ZK301", 17)]
        assert await session.actions(uri, line=0, only=[types.CodeActionKind.SourceFixAll]) == []
        # An action offered for an older version resolves to no edit.
        assert (await session.client.code_action_resolve_async(listed)).edit is None


@pytest.mark.asyncio
async def test_noqa_action_adds_and_extends_the_comment(tmp_path: Path) -> None:
    async with editor(tmp_path) as session:
        uri = session.open("scheduler.py", SAMPLE)
        await session.diagnostics(uri)
        actions = await session.actions(uri, line=6)
        noqa = next(a for a in actions if a.title == "Suppress ZK401 on this line")
        text = apply(SAMPLE, edits_of(noqa, uri))
        assert text.splitlines()[6] == "RETRY = KazooRetry(max_tries=3, delay=0.5)  # noqa: ZK401"
        assert text.replace("  # noqa: ZK401", "") == SAMPLE
        version = session.change(uri, text)
        assert codes(await session.diagnostics(uri, version)) == [("ZK301", 17), ("ZK202", 20)]

        # A line that already has a noqa for another code gets this one added to it.
        text = SAMPLE.replace("        self.zk.stop()\n", "        self.zk.stop()  # noqa: E501\n")
        version = session.change(uri, text)
        await session.diagnostics(uri, version)
        noqa = next(a for a in await session.actions(uri, line=19) if a.title == "Suppress ZK202 on this line")
        assert apply(text, edits_of(noqa, uri)).splitlines()[19] == "        self.zk.stop()  # noqa: E501, ZK202"


@pytest.mark.asyncio
async def test_noqa_is_not_offered_where_a_comment_would_change_the_code(tmp_path: Path) -> None:
    text = (
        "from kazoo.client import KazooClient\n"
        "from kazoo.retry import KazooRetry\n"
        'zk = KazooClient(hosts="""h1,\n'
        'h2""", connection_retry=KazooRetry(max_tries=3))\n'
    )
    async with editor(tmp_path) as session:
        uri = session.open("multiline.py", text)
        diagnostics = await session.diagnostics(uri)
        assert [d.code for d in diagnostics] == ["ZK401"]
        line = diagnostics[0].range.start.line
        assert line == 3  # the finding starts on the string's last line: a comment there is fine
        titles = [a.title for a in await session.actions(uri, line=line)]
        assert "Suppress ZK401 on this line" in titles
        # Started inside a line that ends within a triple-quoted string: no noqa action.
        text = text.replace('zk = KazooClient(hosts="""h1,\nh2""", connection_retry=KazooRetry(max_tries=3))',
                            'zk = KazooClient(connection_retry=KazooRetry(max_tries=3), hosts="""h1,\nh2""")')
        version = session.change(uri, text)
        diagnostics = await session.diagnostics(uri, version)
        assert [d.range.start.line for d in diagnostics] == [2]
        titles = [a.title for a in await session.actions(uri, line=2)]
        assert "Suppress ZK401 on this line" not in titles
        assert any(t.startswith("ZK401: ") for t in titles)


@pytest.mark.asyncio
async def test_hover_shows_the_rules_summary_and_why(tmp_path: Path) -> None:
    from zklint.rules import all_rules

    rule = all_rules()["ZK401"]
    async with editor(tmp_path) as session:
        uri = session.open("scheduler.py", SAMPLE)
        await session.diagnostics(uri)
        hover = await session.client.text_document_hover_async(types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=6, character=20)
        ))
        assert hover.contents.kind == types.MarkupKind.Markdown
        assert "**ZK401** `finite-connection-retry`" in hover.contents.value
        assert rule.summary.strip() in hover.contents.value
        assert rule.why.strip() in hover.contents.value
        assert hover.range.start == types.Position(6, 8)
        nothing = await session.client.text_document_hover_async(types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=1, character=3)
        ))
        assert nothing is None


@pytest.mark.asyncio
async def test_utf16_positions(tmp_path: Path) -> None:
    # 😀 is one character to Python and two UTF-16 code units to the editor.
    text = retry_lines(1).replace("hosts='h'", "hosts='😀'")
    async with editor(tmp_path) as session:
        uri = session.open("emoji.py", text)
        (retry,) = await session.diagnostics(uri)
        line = text.splitlines()[2]
        assert retry.range.start.character == line.index("KazooRetry") + 1
        assert retry.range.end.character == len(line) - 1 + 1
        fix = next(a for a in await session.actions(uri, line=2) if a.title.startswith("ZK401: "))
        assert apply(text, edits_of(fix, uri)) == text.replace("max_tries=1", "max_tries=-1")
        noqa = next(a for a in await session.actions(uri, line=2) if a.title.startswith("Suppress"))
        assert apply(text, edits_of(noqa, uri)) == text.replace("=1))\n", "=1))  # noqa: ZK401\n")


@pytest.mark.asyncio
async def test_editor_settings_and_pyproject_changes(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.zklint]\nignore = ["ZK3"]\n')
    async with editor(tmp_path) as session:
        uri = session.open("scheduler.py", SAMPLE)
        assert codes(await session.diagnostics(uri)) == [("ZK401", 7), ("ZK202", 20)]
        assert [r.method for r in session.registrations] == [types.WORKSPACE_DID_CHANGE_WATCHED_FILES]

        # The editor's settings add to the project's: ignore ZK4 too.
        count = len(session.published)
        session.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"zklint": {"ignore": ["ZK4"]}}
        ))
        await session.wait_for(lambda: len(session.published) > count, "diagnostics after a settings change")
        assert codes(session.published[-1].diagnostics) == [("ZK202", 20)]

        # A client that only says "changed" is asked for the section (workspace/configuration).
        session.settings = {"select": ["ZK4"]}
        count = len(session.published)
        session.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        await session.wait_for(lambda: len(session.published) > count, "diagnostics after a pulled settings change")
        assert codes(session.published[-1].diagnostics) == [("ZK401", 7)]

        # pyproject.toml edited on disk: the watcher notification reloads it.
        session.settings = {}
        session.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"zklint": {}}))
        (tmp_path / "pyproject.toml").write_text('[tool.zklint]\nselect = ["ZK2"]\n')
        count = len(session.published)
        session.client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
            types.FileEvent(uri=from_fs_path(str(tmp_path / "pyproject.toml")), type=types.FileChangeType.Changed)
        ]))
        await session.wait_for(
            lambda: len(session.published) > count and codes(session.published[-1].diagnostics) == [("ZK202", 20)],
            "diagnostics after pyproject.toml changed",
        )

        # A client that does not watch files: the next lint notices the file changed.
        (tmp_path / "pyproject.toml").write_text('[tool.zklint]\nselect = ["ZK401"]\n')
        version = session.change(uri, SAMPLE + "\n")
        assert codes(await session.diagnostics(uri, version)) == [("ZK401", 7)]
        (tmp_path / "pyproject.toml").write_text('[tool.zklint]\nselect = ["ZK2"]\n')
        version = session.change(uri, SAMPLE)
        assert codes(await session.diagnostics(uri, version)) == [("ZK202", 20)]

        # A setting naming no rule is one log line; the project's selection stays in force.
        count = len(session.published)
        session.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"zklint": {"select": ["ZK999"]}}
        ))
        await session.wait_for(lambda: len(session.published) > count, "diagnostics after a bad setting")
        assert codes(session.published[-1].diagnostics) == [("ZK202", 20)]
        assert any("ZK999" in m.message and m.type == types.MessageType.Error for m in session.logs)


@pytest.mark.asyncio
async def test_a_change_relints_the_other_open_modules_of_the_workspace(tmp_path: Path) -> None:
    async with editor(tmp_path) as session:
        factory = session.open("pkg/factory.py", retry_lines(1))
        user = session.open("pkg/user.py", SAMPLE)
        await session.diagnostics(factory)
        await session.diagnostics(user)
        before = len([p for p in session.published if p.uri == user])
        session.change(factory, retry_lines(2))
        assert len(await session.diagnostics(factory)) == 2
        await session.wait_for(
            lambda: len([p for p in session.published if p.uri == user]) > before, "the other module's diagnostics"
        )
        # Published again for its own (unchanged) version, with its own findings.
        last = [p for p in session.published if p.uri == user][-1]
        assert last.version == 1 and codes(last.diagnostics) == [("ZK401", 7), ("ZK301", 17), ("ZK202", 20)]
        # Closing a module re-lints the others without its editor text.
        before = len([p for p in session.published if p.uri == user])
        session.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=factory)
        ))
        await session.wait_for(
            lambda: len([p for p in session.published if p.uri == user]) > before, "re-lint after a close"
        )


FACTORY = (
    "from kazoo.client import KazooClient\n"
    "\n"
    "\n"
    "def connect(hosts):\n"
    "    zk = KazooClient(hosts=hosts)\n"
    "    zk.start()\n"
    "    return zk\n"
)
USER = (
    "from app.connection import connect\n"
    "\n"
    "\n"
    "def count(hosts):\n"
    "    zk = connect(hosts)\n"
    "    return len(zk.get_children('/jobs'))\n"
)


@pytest.mark.asyncio
async def test_editing_a_factory_updates_the_findings_of_the_module_that_uses_it(tmp_path: Path) -> None:
    """The project layer in memory: `connect` stops starting the client in the editor
    (unsaved), and the user module's ZK201 goes; the text comes back, and so does it."""
    (tmp_path / "pyproject.toml").write_text("[tool.zklint]\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    async with editor(tmp_path) as session:
        factory = session.open("app/connection.py", FACTORY)
        user = session.open("app/jobs.py", USER)
        await session.diagnostics(factory)
        assert codes(await session.diagnostics(user)) == [("ZK201", 5)]
        before = len([p for p in session.published if p.uri == user])
        session.change(factory, FACTORY.replace("    zk.start()\n", ""))
        await session.wait_for(
            lambda: len([p for p in session.published if p.uri == user]) > before, "the user module re-linted"
        )
        assert codes([p for p in session.published if p.uri == user][-1].diagnostics) == []
        before = len([p for p in session.published if p.uri == user])
        session.change(factory, FACTORY)
        await session.wait_for(
            lambda: len([p for p in session.published if p.uri == user]) > before, "re-linted again"
        )
        assert codes([p for p in session.published if p.uri == user][-1].diagnostics) == [("ZK201", 5)]


@pytest.mark.asyncio
async def test_a_broken_file_gets_no_diagnostics_and_the_server_goes_on(tmp_path: Path) -> None:
    async with editor(tmp_path) as session:
        broken = session.open("broken.py", "from kazoo.client import KazooClient\ndef f(:\n")
        assert await session.diagnostics(broken) == []
        await session.wait_for(
            lambda: any("broken.py" in m.message and "syntax error" in m.message for m in session.logs),
            "a log line for the syntax error",
        )
        deep = session.open("deep.py", "import kazoo\nx = " + "(" * 5000 + "1" + ")" * 5000 + "\n")
        assert await session.diagnostics(deep) == []
        assert await session.actions(broken, line=1) == []
        # The session goes on: another file is linted as usual.
        uri = session.open("scheduler.py", SAMPLE)
        assert len(await session.diagnostics(uri)) == 3
        # And a broken file that is repaired gets its findings.
        version = session.change(broken, SAMPLE)
        assert len(await session.diagnostics(broken, version)) == 3


@pytest.mark.asyncio
async def test_shutdown_and_exit(tmp_path: Path) -> None:
    session = Editor(tmp_path)
    result = await session.start()
    assert result.server_info.name == "zklint"
    sync = result.capabilities.text_document_sync
    assert sync.change == types.TextDocumentSyncKind.Incremental and sync.save
    assert "source.fixAll.zklint" in result.capabilities.code_action_provider.code_action_kinds
    assert result.capabilities.hover_provider
    await session.client.shutdown_async(None)
    session.client.exit(None)
    await asyncio.wait_for(session.client._server.wait(), TIMEOUT)
    assert session.client._server.returncode == 0
    await session.client.stop()


def test_missing_extra_is_one_line(tmp_path: Path) -> None:
    # As on an installation without the extra: importing pygls fails.
    code = "import sys; sys.modules['pygls'] = None; from zklint.cli import main; sys.exit(main(['server']))"
    result = run([sys.executable, "-c", code], cwd=tmp_path)
    assert result.code == 2
    assert result.err == 'zklint: error: the language server needs the server extra: pip install "zklint[server]"\n'
    assert result.out == ""


@pytest.mark.asyncio
async def test_an_invalid_pyproject_is_one_log_line_and_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.zklint]\nselect = "ZK4"\n')
    async with editor(tmp_path) as session:
        uri = session.open("scheduler.py", SAMPLE)
        assert codes(await session.diagnostics(uri)) == [("ZK401", 7), ("ZK301", 17), ("ZK202", 20)]
        errors = [m.message for m in session.logs if m.type == types.MessageType.Error]
        assert errors == [f"zklint: {tmp_path / 'pyproject.toml'}: [tool.zklint] select must be a list of strings; "
                          "using the default settings"]


@pytest.mark.asyncio
async def test_excluded_files_get_no_diagnostics(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.zklint]\nextend-exclude = ["generated"]\n')
    async with editor(tmp_path) as session:
        excluded = session.open("generated/scheduler.py", SAMPLE)
        included = session.open("src/scheduler.py", SAMPLE)
        assert await session.diagnostics(excluded) == []
        assert len(await session.diagnostics(included)) == 3


@pytest.mark.asyncio
async def test_crlf_file_fixes_keep_their_line_endings(tmp_path: Path) -> None:
    text = SAMPLE.replace("\n", "\r\n")
    async with editor(tmp_path) as session:
        uri = session.open("windows.py", text)
        assert codes(await session.diagnostics(uri)) == [("ZK401", 7), ("ZK301", 17), ("ZK202", 20)]
        fix = next(a for a in await session.actions(uri, line=19) if a.title.startswith("ZK202: "))
        fixed = apply(text, edits_of(fix, uri))
        assert fixed == cli_fixed(tmp_path, text, "--select", "ZK202")
        assert "self.zk.close()\r\n" in fixed and "\n" not in fixed.replace("\r\n", "")
        (fix_all,) = await session.actions(uri, line=0, only=["source.fixAll"])
        assert apply(text, edits_of(fix_all, uri)) == cli_fixed(tmp_path, text)


# The server with one more rule, ZK999, that has a bug: it raises on any module naming
# `explode`. As a bug in a real rule would, it must cost that file its diagnostics only.
BUGGY_RULE_SERVER = """
import sys
from zklint.rules import all_rules
from zklint.rules.base import Rule, register

all_rules()

@register
class Buggy(Rule):
    code = "ZK999"
    name = "buggy"
    summary = why = example = use_instead = ""

    def check(self):
        if "explode" in self.context.source.text:
            raise KeyError("a bug")
        return iter(())

from zklint.server import serve
sys.exit(serve())
"""


@pytest.mark.asyncio
async def test_an_internal_error_is_one_log_message_and_no_diagnostics_for_that_file(tmp_path: Path) -> None:
    async with editor(tmp_path, command=[sys.executable, "-c", BUGGY_RULE_SERVER]) as session:
        crashing = session.open("crashing.py", SAMPLE + "explode = True\n")
        assert await session.diagnostics(crashing) == []
        uri = session.open("scheduler.py", SAMPLE)
        assert len(await session.diagnostics(uri)) == 3
        assert await session.actions(crashing, line=6) == []
        errors = [m.message for m in session.logs if m.type == types.MessageType.Error]
        assert len(errors) == 1
        assert errors[0].startswith(f"zklint: {tmp_path / 'crashing.py'}: internal error: KeyError: 'a bug'")
        # Still one message after more edits hitting the same bug (not one per keystroke).
        version = session.change(crashing, SAMPLE + "explode = False\n")
        assert await session.diagnostics(crashing, version) == []
        assert len([m for m in session.logs if m.type == types.MessageType.Error]) == 1
