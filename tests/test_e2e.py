"""End to end, in real subprocesses: every front end reports the same ZK401 findings.

`zklint check`, the short forms, ``python -m zklint``, ``flake8 --select=ZK`` (the
plugin through flake8's entry point) and the pre-commit hooks (``pre-commit try-repo``
against a committed copy of this working tree).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from tests.cli_support import (
    BAD,
    BAD_FIXED,
    REPO,
    assert_no_traceback,
    clean_env,
    requires,
    run,
    run_zklint,
    write,
    zk401_bad_fixtures,
)
from zklint import __version__

FIXTURE_FILES = zk401_bad_fixtures()


@pytest.fixture
def samples(tmp_path) -> Path:
    """The ZK401 bad fixtures, copied where no pyproject.toml or .flake8 applies."""
    work = tmp_path / "work"
    work.mkdir()
    for path in FIXTURE_FILES:
        shutil.copyfile(path, work / path.name)
    return work


def zk401(result) -> Set[Tuple[str, int, int, str]]:
    return {f for f in result.findings() if f[3] == "ZK401"}


def expected_zk401() -> Set[Tuple[str, int]]:
    from tests.fixture_harness import Fixture

    found = set()
    for path in FIXTURE_FILES:
        for line, code, _ in Fixture("ZK401", path).expected():
            if code == "ZK401":
                found.add((path.name, line))
    return found


def test_fixture_files_exist():
    assert len(FIXTURE_FILES) >= 5


@pytest.mark.parametrize(
    "form",
    [
        ["check"],
        [],  # zklint PATHS
        ["check", "--select", "ZK"],
        ["--select=ZK4"],
    ],
    ids=["check", "short", "check-select", "short-select"],
)
def test_console_script_forms_agree(samples, form):
    names = [p.name for p in FIXTURE_FILES]
    result = run_zklint(form + names, cwd=samples)
    assert_no_traceback(result)
    assert result.code == 1, result.err
    assert {(name, line) for name, line, _, _ in zk401(result)} == expected_zk401()


def test_python_dash_m_agrees(samples):
    names = [p.name for p in FIXTURE_FILES]
    script = run_zklint(["check"] + names, cwd=samples)
    for args in (["check"] + names, names):
        module = run([sys.executable, "-m", "zklint"] + args, cwd=samples)
        assert_no_traceback(module)
        assert module.code == script.code == 1
        assert zk401(module) == zk401(script)


@requires("flake8")
def test_flake8_plugin_agrees(samples):
    names = [p.name for p in FIXTURE_FILES]
    script = run_zklint(["check"] + names, cwd=samples)
    flake8 = run(["flake8", "--select=ZK", "--isolated"] + names, cwd=samples)
    assert_no_traceback(flake8)
    assert "ZK000" not in flake8.out, flake8.out
    assert flake8.code == 1, flake8.err
    assert zk401(flake8) == zk401(script)
    assert zk401(flake8)


@requires("flake8")
def test_flake8_noqa_and_bad_files_do_not_crash(tmp_path):
    write(tmp_path / "noqa.py", BAD.replace("max_tries=3))", "max_tries=3))  # noqa: ZK401"))
    write(tmp_path / "broken.py", "import kazoo\ndef f(:\n")
    (tmp_path / "binary.py").write_bytes(b"kazoo\x00\xff\xfe" * 100)
    result = run(["flake8", "--select=ZK", "--isolated", "."], cwd=tmp_path)
    assert_no_traceback(result)
    assert "ZK000" not in result.out
    assert "ZK401" not in result.out


def test_version_forms(tmp_path):
    for command in (["--version"],):
        result = run_zklint(command, cwd=tmp_path)
        assert result.code == 0 and result.out.strip() == f"zklint {__version__}"
    module = run([sys.executable, "-m", "zklint", "--version"], cwd=tmp_path)
    assert module.code == 0 and module.out.strip() == f"zklint {__version__}"


def test_fix_short_form_in_a_subprocess(tmp_path):
    path = write(tmp_path / "app.py", BAD)
    result = run_zklint(["--fix", "--select", "ZK401", "app.py"], cwd=tmp_path)
    assert result.code == 0, result.err
    assert path.read_text() == BAD_FIXED


# ---- stdin ------------------------------------------------------------------------------------

def test_stdin_with_filename(tmp_path):
    result = run_zklint(["check", "--select", "ZK401", "-", "--stdin-filename", "svc/app.py"], cwd=tmp_path,
                        input=BAD.encode())
    assert result.code == 1
    assert result.findings() == {("app.py", 4, 46, "ZK401")}
    assert "svc/app.py:4:46: ZK401" in result.out


def test_stdin_without_filename(tmp_path):
    result = run_zklint(["-", "--select", "ZK401"], cwd=tmp_path, input=BAD.encode())
    assert result.code == 1 and {f[3] for f in result.findings()} == {"ZK401"}


def test_stdin_fix_prints_the_fixed_code(tmp_path):
    result = run_zklint(["check", "--fix", "--select", "ZK401", "-", "--stdin-filename", "app.py"], cwd=tmp_path,
                        input=BAD.encode())
    assert result.code == 0, result.err
    assert result.out == BAD_FIXED
    assert not list(tmp_path.iterdir())  # nothing written


def test_stdin_fix_passes_clean_code_through_unchanged(tmp_path):
    source = "# not about kazoo at all\r\nx = 1"
    result = run_zklint(["check", "--fix", "-"], cwd=tmp_path, input=source.encode())
    assert result.code == 0 and result.out == source


def test_stdin_fix_keeps_bytes(tmp_path):
    raw = ("# -*- coding: latin-1 -*-\r\n" + BAD.replace("\n", "\r\n") + "# caf\xe9\r\n").encode("latin-1")
    result = subprocess.run(
        [*_zklint(), "check", "--fix", "--select", "ZK401", "-"], input=raw, capture_output=True, cwd=tmp_path,
        env=clean_env(), timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == raw.replace(b"max_tries=3", b"max_tries=-1")


def test_stdin_diff(tmp_path):
    result = run_zklint(["check", "--diff", "--select", "ZK401", "-", "--stdin-filename", "app.py"], cwd=tmp_path,
                        input=BAD.encode())
    assert result.code == 1
    assert "+zk = KazooClient(hosts=\"h\", connection_retry=KazooRetry(max_tries=-1))" in result.out


def test_stdin_bad_input_is_one_line(tmp_path):
    result = run_zklint(["check", "-", "--stdin-filename", "app.py"], cwd=tmp_path, input=b"import kazoo\n\xff\xfe(\n")
    assert result.code == 2
    assert_no_traceback(result)
    assert result.error_lines() == [line for line in result.err.splitlines() if line.strip()]
    assert len(result.error_lines()) == 1 and result.error_lines()[0].startswith("app.py: error: ")


def test_stdin_per_file_ignores_use_the_filename(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.zklint]\nper-file-ignores = { "gen/*" = ["ZK401"] }\n')
    ignored = run_zklint(["check", "-", "--stdin-filename", "gen/app.py"], cwd=tmp_path, input=BAD.encode())
    assert "ZK401" not in ignored.out
    kept = run_zklint(["check", "-", "--stdin-filename", "src/app.py"], cwd=tmp_path, input=BAD.encode())
    assert "ZK401" in kept.out


def test_stdin_cannot_be_mixed_with_paths(tmp_path):
    write(tmp_path / "app.py", BAD)
    result = run_zklint(["check", "-", "app.py"], cwd=tmp_path, input=BAD.encode())
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1


def _zklint() -> List[str]:
    from tests.cli_support import zklint_command

    return zklint_command()


# ---- pre-commit ---------------------------------------------------------------------------------

def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=zklint@example.invalid", "-c", "user.name=zklint", "-c", "commit.gpgsign=false",
         *args],
        cwd=str(cwd), check=True, capture_output=True, timeout=60,
    )


def _working_tree_files() -> List[str]:
    """Tracked and untracked (not ignored) files of this working tree: uncommitted work included."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=str(REPO), check=True, capture_output=True, timeout=60,
    ).stdout.decode().split("\0")
    return [name for name in listed if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory) -> Dict[str, Path]:
    """A git repository holding a committed snapshot of the working tree, and a PRE_COMMIT_HOME."""
    if shutil.which("pre-commit") is None or shutil.which("git") is None:
        pytest.skip("pre-commit and git are needed")
    base = tmp_path_factory.mktemp("precommit")
    repo = base / "zklint-repo"
    for name in _working_tree_files():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    assert (repo / ".pre-commit-hooks.yaml").exists()
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "snapshot")
    home = base / "home"
    home.mkdir()
    return {"repo": repo, "home": home}


def _try_repo(hook_repo, work: Path, hook: str, files: List[str]):
    env = clean_env(PRE_COMMIT_HOME=str(hook_repo["home"]))
    env.pop("PYTHONPATH")  # the hook runs the zklint installed in pre-commit's own environment
    result = run(
        ["pre-commit", "try-repo", str(hook_repo["repo"]), hook, "--files", *files],
        cwd=work, env=env, timeout=900,
    )
    if result.code not in (0, 1) or "An unexpected error has occurred" in result.out:
        log = hook_repo["home"] / "pre-commit.log"
        detail = log.read_text()[-3000:] if log.exists() else result.out[-3000:]
        offline = ("Could not find a version", "NewConnectionError", "Network is unreachable",
                   "Temporary failure in name resolution")
        if any(word in detail for word in offline):
            pytest.skip("pre-commit could not install the hook environment (no network to PyPI)")
        pytest.fail(f"pre-commit try-repo failed:\n{detail}")
    return result


def _hook_work_repo(tmp_path: Path) -> Path:
    work = tmp_path / "project"
    work.mkdir()
    _git(work, "init", "-q")
    for path in FIXTURE_FILES:
        shutil.copyfile(path, work / path.name)
    _git(work, "add", "-A")
    return work


@pytest.mark.slow
def test_pre_commit_hook_reports_the_same_findings(hook_repo, tmp_path):
    work = _hook_work_repo(tmp_path)
    names = [p.name for p in FIXTURE_FILES]
    result = _try_repo(hook_repo, work, "zklint", names)
    assert_no_traceback(result)
    assert result.code == 1, result.out
    assert "- hook id: zklint" in result.out
    script = run_zklint(["check"] + names, cwd=work)
    assert zk401(result) == zk401(script)
    assert {(name, line) for name, line, _, _ in zk401(result)} == expected_zk401()
    # the check hook writes nothing
    for path in FIXTURE_FILES:
        assert (work / path.name).read_bytes() == path.read_bytes()


@pytest.mark.slow
def test_pre_commit_fix_hook_rewrites_files(hook_repo, tmp_path):
    work = _hook_work_repo(tmp_path)
    # Only ZK401, so the result is exactly the fixtures' expected output; this also
    # proves the hook reads [tool.zklint] from the project it runs in.
    write(work / "pyproject.toml", '[tool.zklint]\nselect = ["ZK401"]\n')
    names = [p.name for p in FIXTURE_FILES]
    result = _try_repo(hook_repo, work, "zklint-fix", names)
    assert_no_traceback(result)
    assert result.code == 1  # pre-commit fails a hook that modified files
    assert "files were modified by this hook" in result.out
    for path in FIXTURE_FILES:
        expected = path.with_name(path.stem + ".fixed.py")
        if expected.exists():
            assert (work / path.name).read_bytes() == expected.read_bytes(), path.name
    assert not [p for p in os.listdir(work) if p.startswith(".zklint-")]


def test_a_project_with_an_http_package_at_its_root(tmp_path):
    """`python -m zklint` puts the current directory first on sys.path: a project whose
    root holds a package named like a standard module zklint imports (`http/`, as
    bsc-s2/pykit does) must still be checked."""
    from tests.cli_support import FIXTURES, clean_env, run

    (tmp_path / "http").mkdir()
    (tmp_path / "http" / "__init__.py").write_text("raise ImportError('the project, not the stdlib')\n")
    (tmp_path / "app.py").write_bytes((FIXTURES / "ZK401" / "bad_alias_imports.py").read_bytes())
    result = run([sys.executable, "-m", "zklint", "check", "--no-cache", "."], tmp_path, env=clean_env())
    assert result.code == 1, result.err
    assert "ZK401" in result.out


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    """`zklint check | head -1`: the command leaves quietly when its reader goes away,
    and a reader that takes everything gets everything (the output is flushed before the
    process leaves without tearing the interpreter down)."""
    for index in range(40):
        (tmp_path / f"bad_{index}.py").write_text(
            "from kazoo.client import KazooClient\n\nzk = KazooClient(hosts='h', timeout=1.0)\n"
        )
    command = [sys.executable, "-m", "zklint", "check", "--no-cache", "--output-format", "concise", "."]
    whole = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert whole.returncode == 1
    assert whole.stdout.count(": ZK402 ") == 40
    assert whole.stdout.rstrip().endswith("Found 40 errors (0 fixable with --fix).")
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.readline()
    process.stdout.close()  # the reader stops after one line
    _, err = process.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
