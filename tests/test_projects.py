"""The project layer on small multi-module projects: `tests/fixtures/projects/<name>/`.

Each project carries its expectations inline (``# error: ZK201`` on the line), one shape
of client hidden from a single-module analysis per project, each with a negative twin.
Every entry point must say the same about every file: `zklint check .` from the
project's root, `zklint check one.py` (what pre-commit runs), the flake8 plugin, a
warm run from the cache; and editing a factory in one module changes the findings of
another.
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path
from typing import Set, Tuple

import pytest

from tests.cli_support import FINDING, run_main
from tests.fixture_harness import _EXPECTATION
from zklint.checking import forget_projects
from zklint.flake8_plugin import ZkLintChecker

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
NAMES = sorted(p.name for p in PROJECTS.iterdir() if p.is_dir())

Found = Set[Tuple[str, int, str]]


def expectations(root: Path) -> Found:
    found = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = _EXPECTATION.search(line)
            if match:
                for code in match.group("codes").split(","):
                    found.add((rel, lineno, code.strip().partition(":")[0]))
    return found


def cli_findings(args, capsys, cwd: Path, monkeypatch) -> Found:
    result = run_main(["check", "--output-format", "concise", *args], capsys, cwd=cwd, monkeypatch=monkeypatch)
    assert result.code in (0, 1), result.err
    assert not result.error_lines(), result.err
    return {
        (os.path.normpath(m.group("path")).replace(os.sep, "/"), int(m.group("line")), m.group("code"))
        for m in FINDING.finditer(result.out)
    }


@pytest.fixture
def project(request, tmp_path) -> Path:
    """A copy of the named project (the cache and edits stay out of the repository)."""
    copy = tmp_path / request.param
    shutil.copytree(PROJECTS / request.param, copy)
    return copy


def test_every_shape_has_a_project_with_findings():
    assert len(NAMES) >= 7
    for name in NAMES:
        assert expectations(PROJECTS / name), f"{name} expects no finding"


@pytest.mark.parametrize("project", NAMES, indirect=True)
def test_whole_project_check_matches_expectations(project, capsys, monkeypatch):
    found = cli_findings(["--no-cache", "."], capsys, project, monkeypatch)
    assert found == expectations(project)


@pytest.mark.parametrize("project", NAMES, indirect=True)
def test_one_file_at_a_time_says_the_same(project, capsys, monkeypatch):
    expected = expectations(project)
    for path in sorted(project.rglob("*.py")):
        rel = path.relative_to(project).as_posix()
        found = cli_findings(["--no-cache", rel], capsys, project, monkeypatch)
        assert found == {e for e in expected if e[0] == rel}, rel


@pytest.mark.parametrize("project", NAMES, indirect=True)
def test_flake8_plugin_says_the_same(project, monkeypatch):
    monkeypatch.chdir(project)
    forget_projects()
    expected = expectations(project)
    for path in sorted(project.rglob("*.py")):
        rel = path.relative_to(project).as_posix()
        text = path.read_text(encoding="utf-8")
        checker = ZkLintChecker(ast.parse(text), text.splitlines(keepends=True), rel)
        found = {(rel, line, message.split()[0]) for line, _, message, _ in checker.run()}
        assert found == {e for e in expected if e[0] == rel}, rel
    forget_projects()


@pytest.mark.parametrize("project", NAMES, indirect=True)
def test_warm_run_from_the_cache_says_the_same(project, capsys, monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    cold = cli_findings(["--cache-dir", str(cache), "."], capsys, project, monkeypatch)
    assert any(cache.rglob("*.json")), "the cold run wrote no cache"
    warm = cli_findings(["--cache-dir", str(cache), "."], capsys, project, monkeypatch)
    assert cold == warm == expectations(project)


@pytest.mark.parametrize("project", ["factory", "crossmodule", "scripts"], indirect=True)
def test_a_warm_run_reads_no_summary(project, capsys, monkeypatch, tmp_path):
    """Nothing changed: the findings come from the index; no summary is read or settled."""
    from zklint.project.cache import Cache

    cache = str(tmp_path / "cache")
    cold = cli_findings(["--cache-dir", cache, "."], capsys, project, monkeypatch)
    read = []
    original = Cache.summary
    monkeypatch.setattr(Cache, "summary", lambda self, digest: read.append(digest) or original(self, digest))
    assert cli_findings(["--cache-dir", cache, "."], capsys, project, monkeypatch) == cold
    assert read == []
    # a comment changes a file's bytes, not its summary: still nothing to settle again
    module = next(p for p in sorted(project.rglob("*.py")) if "azoo" in p.read_text())
    module.write_text(module.read_text() + "# touched\n")
    assert cli_findings(["--cache-dir", cache, "."], capsys, project, monkeypatch) == cold
    assert read == []


@pytest.mark.parametrize("project", ["factory"], indirect=True)
def test_summaries_lost_from_the_cache_are_built_again(project, capsys, monkeypatch, tmp_path):
    """The index names summaries whose files are gone: settling the project (a factory
    changed) summarises those modules again instead of losing their facts."""
    cache = tmp_path / "cache"
    before = cli_findings(["--cache-dir", str(cache), "."], capsys, project, monkeypatch)
    assert ("src/jobs/sweep.py", 7, "ZK201") in before
    for path in cache.rglob("summaries/*.json"):
        path.unlink()
    connection = project / "src" / "jobs" / "connection.py"
    connection.write_text(connection.read_text().replace("    client.start()\n", ""))
    after = cli_findings(["--cache-dir", str(cache), "."], capsys, project, monkeypatch)
    assert after == cli_findings(["--no-cache", "."], capsys, project, monkeypatch)
    assert not any(rel == "src/jobs/sweep.py" and code == "ZK201" for rel, _, code in after)


@pytest.mark.parametrize("project", ["factory"], indirect=True)
def test_editing_a_factory_changes_findings_in_another_module(project, capsys, monkeypatch):
    """The cache is at the project root (the default); `connect` stops starting the client."""
    monkeypatch.delenv("ZKLINT_CACHE_DIR", raising=False)
    before = cli_findings(["."], capsys, project, monkeypatch)
    assert ("src/jobs/sweep.py", 7, "ZK201") in before
    assert (project / ".zklint_cache" / ".gitignore").read_text().strip().endswith("*")
    connection = project / "src" / "jobs" / "connection.py"
    connection.write_text(connection.read_text().replace("    client.start()\n", ""))
    after = cli_findings(["."], capsys, project, monkeypatch)
    assert not any(rel == "src/jobs/sweep.py" and code == "ZK201" for rel, _, code in after)
    # and back: the cached findings of the first state are found again, unchanged
    connection.write_text((PROJECTS / "factory" / "src" / "jobs" / "connection.py").read_text())
    assert cli_findings(["."], capsys, project, monkeypatch) == before


@pytest.mark.parametrize("project", ["handoff"], indirect=True)
def test_a_callee_that_starts_keeping_the_client_silences_the_caller(project, capsys, monkeypatch, tmp_path):
    cache = str(tmp_path / "cache")
    assert ("zkinspect/cli.py", 12, "ZK201") in cli_findings(["--cache-dir", cache, "."], capsys, project, monkeypatch)
    render = project / "zkinspect" / "render.py"
    render.write_text(render.read_text() + "\n\nKEPT = []\n\n\ndef keep(zk):\n    KEPT.append(zk)\n")
    render.write_text(render.read_text().replace("    data, stat = zk.get(path)\n", "    KEPT.append(zk)\n"
                                                 "    data, stat = zk.get(path)\n"))
    after = cli_findings(["--cache-dir", cache, "."], capsys, project, monkeypatch)
    assert ("zkinspect/cli.py", 12, "ZK201") not in after


def _plugin_findings(path: Path) -> Set[Tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    checker = ZkLintChecker(ast.parse(text), text.splitlines(keepends=True), str(path))
    return {(line, message.split()[0]) for line, _, message, _ in checker.run()}


def _age(path: Path, seconds: int = 60) -> None:
    """Make the file look written a while ago (a file changed a moment ago is not stamped)."""
    past = os.stat(path).st_mtime_ns - seconds * 1_000_000_000
    os.utime(path, ns=(past, past))


@pytest.mark.parametrize("project", ["factory"], indirect=True)
def test_the_plugin_reads_unchanged_files_once(project, monkeypatch, tmp_path):
    """A second process (the next flake8 worker or run) stats the project's files and reads
    only those changed since; the findings are the same, and a change is seen."""
    import zklint.project as project_layer

    monkeypatch.setenv("ZKLINT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(project)
    for path in project.rglob("*.py"):
        _age(path)
    sweep = project / "src" / "jobs" / "sweep.py"
    forget_projects()
    first = _plugin_findings(sweep)
    assert (7, "ZK201") in first
    read = []
    original = project_layer.read_bytes
    monkeypatch.setattr(project_layer, "read_bytes", lambda path: read.append(path) or original(path))
    forget_projects()
    assert _plugin_findings(sweep) == first
    assert read == []
    connection = project / "src" / "jobs" / "connection.py"
    connection.write_text(connection.read_text().replace("    client.start()\n", ""))
    forget_projects()
    assert (7, "ZK201") not in _plugin_findings(sweep)
    # the changed file, and (their names may hide callers) files that never name kazoo
    assert read[0] == str(connection)
    assert all("azoo" not in Path(path).read_text() for path in set(read) - {str(connection)})
    forget_projects()


def test_the_plugin_stamps_a_project_without_kazoo_and_sees_kazoo_arrive(tmp_path, monkeypatch):
    """A project none of whose files names kazoo: read once, then only stat'ed; a file that
    starts using kazoo (a helper other files hand their client to) is read and counts."""
    import zklint.project as project_layer

    (tmp_path / "pyproject.toml").write_text("")
    helper = tmp_path / "helper.py"
    helper.write_text("def show(zk, path):\n    data, stat = zk.get(path)\n    return data\n")
    main = tmp_path / "main.py"
    main.write_text("import helper\n\n\ndef run():\n    return 1\n")
    for path in (helper, main):
        _age(path)
    monkeypatch.setenv("ZKLINT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    forget_projects()
    assert _plugin_findings(helper) == set()
    read = []
    original = project_layer.read_bytes
    monkeypatch.setattr(project_layer, "read_bytes", lambda path: read.append(path) or original(path))
    forget_projects()
    assert _plugin_findings(helper) == set()
    assert read == []
    main.write_text(
        "from kazoo.client import KazooClient\n\nimport helper\n\n\ndef run():\n"
        "    zk = KazooClient()\n    zk.start()\n    helper.show(zk, '/a')\n"
    )
    forget_projects()
    assert _plugin_findings(main) == {(8, "ZK201")}  # show() only uses the client: still main's to stop
    assert str(main) in read
    forget_projects()


def test_the_plugin_walks_a_project_again_only_when_a_directory_changed(tmp_path, monkeypatch):
    """The walk of a project without kazoo is kept beside the stamps: the next process
    stats the directories it listed instead of walking again; a file added is seen."""
    import zklint.files as files
    from zklint.checking import project_names_kazoo

    (tmp_path / ".git").mkdir()  # in a repository: the walk looks for .gitignore files up to it
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "pkg").mkdir()
    main = tmp_path / "main.py"
    main.write_text("import pkg.helper\n\n\ndef run():\n    return pkg.helper.show(None, '/a')\n")
    (tmp_path / "pkg" / "helper.py").write_text("def show(zk, path):\n    return zk.get(path)\n")
    for path in [tmp_path, *tmp_path.rglob("*")]:
        _age(path)
    monkeypatch.setenv("ZKLINT_CACHE_DIR", str(tmp_path.parent / (tmp_path.name + "-cache")))
    monkeypatch.chdir(tmp_path)
    walks = []
    original = files.list_files
    monkeypatch.setattr(files, "list_files", lambda *args: walks.append(args) or original(*args))
    forget_projects()
    assert not project_names_kazoo(str(main)) and len(walks) == 1
    forget_projects()
    assert not project_names_kazoo(str(main)) and len(walks) == 1  # kept: nothing it listed changed
    (tmp_path / "pkg" / "factory.py").write_text(
        "from kazoo.client import KazooClient\n\n\ndef make():\n    return KazooClient()\n"
    )
    forget_projects()
    assert project_names_kazoo(str(main)) and len(walks) == 2
    forget_projects()


def test_no_cache_writes_nothing(tmp_path, capsys, monkeypatch):
    copy = tmp_path / "factory"
    shutil.copytree(PROJECTS / "factory", copy)
    monkeypatch.delenv("ZKLINT_CACHE_DIR", raising=False)
    cli_findings(["--no-cache", "."], capsys, copy, monkeypatch)
    assert not (copy / ".zklint_cache").exists()


def test_cache_dir_from_the_environment(tmp_path, capsys, monkeypatch):
    copy = tmp_path / "factory"
    shutil.copytree(PROJECTS / "factory", copy)
    monkeypatch.setenv("ZKLINT_CACHE_DIR", str(tmp_path / "elsewhere"))
    cli_findings(["."], capsys, copy, monkeypatch)
    assert not (copy / ".zklint_cache").exists()
    assert any((tmp_path / "elsewhere").rglob("*.json"))


def test_a_corrupt_cache_is_ignored(tmp_path, capsys, monkeypatch):
    copy = tmp_path / "factory"
    shutil.copytree(PROJECTS / "factory", copy)
    cache = tmp_path / "cache"
    expected = cli_findings(["--cache-dir", str(cache), "."], capsys, copy, monkeypatch)
    for path in cache.rglob("*.json"):
        path.write_text("{not json")
    assert cli_findings(["--cache-dir", str(cache), "."], capsys, copy, monkeypatch) == expected


def test_each_file_follows_the_pyproject_nearest_to_it(tmp_path, capsys, monkeypatch):
    """A monorepo: the root's table selects everything, one package ignores ZK401 and
    excludes its generated code, the other has no table of its own."""
    bad = (PROJECTS.parent / "ZK401" / "bad_alias_imports.py").read_text()
    (tmp_path / "pyproject.toml").write_text("[tool.zklint]\n")
    (tmp_path / "quiet").mkdir()
    (tmp_path / "quiet" / "pyproject.toml").write_text(
        '[tool.zklint]\nignore = ["ZK401"]\nextend-exclude = ["generated/"]\n'
    )
    (tmp_path / "quiet" / "app.py").write_text(bad)
    (tmp_path / "quiet" / "generated").mkdir()
    (tmp_path / "quiet" / "generated" / "stub.py").write_text(bad)
    (tmp_path / "loud").mkdir()
    (tmp_path / "loud" / "app.py").write_text(bad)
    found = cli_findings(["--no-cache", "."], capsys, tmp_path, monkeypatch)
    codes = {(rel, code) for rel, _, code in found}
    assert ("loud/app.py", "ZK401") in codes
    assert not any(rel.startswith("quiet/") and code == "ZK401" for rel, code in codes)
    assert not any(rel.startswith("quiet/generated/") for rel, _ in codes)
    # the same file checked on its own follows the same table
    alone = cli_findings(["--no-cache", "quiet/app.py"], capsys, tmp_path, monkeypatch)
    assert not any(code == "ZK401" for _, _, code in alone)


@pytest.mark.parametrize("project", ["factory"], indirect=True)
def test_stdin_with_a_filename_is_checked_as_that_file_of_its_project(project, capsys, monkeypatch):
    text = (project / "src" / "jobs" / "sweep.py").read_bytes()
    monkeypatch.chdir(project)
    forget_projects()
    monkeypatch.setattr("sys.stdin", type("In", (), {"buffer": __import__("io").BytesIO(text)})())
    result = run_main(["check", "--no-cache", "--output-format", "concise", "-", "--stdin-filename",
                       "src/jobs/sweep.py"], capsys)
    forget_projects()
    found = {(int(m.group("line")), m.group("code")) for m in FINDING.finditer(result.out)}
    assert found == {(line, code) for rel, line, code in expectations(project) if rel == "src/jobs/sweep.py"}
