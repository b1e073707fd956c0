"""The ``zklint`` command's behaviour, run in-process: exit codes, selection, files, config, noqa."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli_support import BAD, BAD_FIXED, GOOD, run_main, snapshot, write
from zklint import __version__


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """cli(*args, cwd=tmp_path) -> Result, run in-process from `cwd`."""

    def invoke(*args, cwd: Path = tmp_path):
        return run_main([str(a) for a in args], capsys, cwd=cwd, monkeypatch=monkeypatch)

    return invoke


def has_zk401(result) -> bool:
    return "ZK401" in result.codes()


# ---- exit codes -----------------------------------------------------------------------------

def test_exit_0_when_clean(cli, tmp_path):
    write(tmp_path / "good.py", GOOD)
    result = cli("check", "--select", "ZK401", "good.py")
    assert result.code == 0, result
    assert result.findings() == set()


def test_exit_1_with_findings(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    result = cli("check", "--select", "ZK401", "bad.py")
    assert result.code == 1, result
    assert result.findings() == {("bad.py", 4, 46, "ZK401")}


def test_exit_2_when_a_file_fails_but_others_are_still_checked(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    write(tmp_path / "broken.py", "import kazoo\ndef f(:\n")
    result = cli("check", "--select", "ZK401", "bad.py", "broken.py")
    assert result.code == 2
    assert has_zk401(result)  # the good file's finding is still reported
    assert result.error_lines() == ["broken.py: error: syntax error at line 2: invalid syntax"]


def test_exit_2_on_a_missing_path(cli, tmp_path):
    write(tmp_path / "good.py", GOOD)
    result = cli("check", "good.py", "missing.py")
    assert result.code == 2
    assert result.error_lines() == ["missing.py: error: no such file or directory"]


def test_exit_zero_masks_findings_not_errors(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    assert cli("check", "--exit-zero", "bad.py").code == 0
    write(tmp_path / "broken.py", "import kazoo\n(\n")
    assert cli("check", "--exit-zero", "bad.py", "broken.py").code == 2


def test_short_forms_mean_check(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    assert cli("bad.py").code == 1
    assert has_zk401(cli("bad.py"))
    assert cli("--select", "ZK401", "bad.py").code == 1
    result = cli("--fix", "--select", "ZK401", "bad.py")
    assert result.code == 0
    assert (tmp_path / "bad.py").read_text() == BAD_FIXED


def test_no_paths_means_the_current_directory(cli, tmp_path):
    write(tmp_path / "pkg" / "bad.py", BAD)
    result = cli("check", "--select", "ZK401")
    assert result.code == 1 and {f[0] for f in result.findings()} == {"bad.py"}


def test_version(cli):
    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"zklint {__version__}"


# ---- rule selection -------------------------------------------------------------------------

@pytest.mark.parametrize("selector", ["ZK", "ZK4", "ZK40", "ZK401", "zk401", "ALL", "ZK4,ZK5"])
def test_select_prefixes_that_include_zk401(cli, tmp_path, selector):
    write(tmp_path / "bad.py", BAD)
    result = cli("check", "--select", selector, "bad.py")
    assert has_zk401(result) and result.code == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--select", "ZK5"],
        ["--select", "ZK1,ZK2"],
        ["--ignore", "ZK4"],
        ["--ignore", "ZK401"],
        ["--ignore", "ZK"],
        ["--select", "ZK4", "--ignore", "ZK401"],
        ["--select", "ZK", "--ignore", "ZK40"],
    ],
)
def test_selections_that_exclude_zk401(cli, tmp_path, args):
    write(tmp_path / "bad.py", BAD)
    assert not has_zk401(cli("check", *args, "bad.py"))


def test_most_specific_selector_wins(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    assert has_zk401(cli("check", "--ignore", "ZK4", "--select", "ZK401", "bad.py"))
    assert not has_zk401(cli("check", "--select", "ZK4", "--ignore", "ZK401", "bad.py"))


def test_extend_select_adds_to_select(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    assert has_zk401(cli("check", "--select", "ZK5", "--extend-select", "ZK401", "bad.py"))
    assert has_zk401(cli("check", "--select", "ZK5", "--extend-select", "ZK4", "bad.py"))


@pytest.mark.parametrize("option", ["--select", "--ignore", "--extend-select"])
@pytest.mark.parametrize("selector", ["ZK999", "XX", "ZK4,ZK4000"])
def test_unknown_selector_is_a_one_line_usage_error(cli, tmp_path, option, selector):
    write(tmp_path / "bad.py", BAD)
    result = cli("check", option, selector, "bad.py")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zklint: error:") and "unknown rule selector" in lines[0], lines
    assert "Traceback" not in result.err and result.out == ""


def test_unknown_rule_for_rule_command(cli):
    result = cli("rule", "ZK999")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1


# ---- output modes ----------------------------------------------------------------------------

def test_quiet_prints_findings_without_summary(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    loud = cli("check", "--select", "ZK401", "bad.py")
    quiet = cli("check", "--select", "ZK401", "--quiet", "bad.py")
    assert "Found 1 error" in loud.out
    assert "Found" not in quiet.out and "Found" not in quiet.err
    assert quiet.findings() == loud.findings() and quiet.code == 1
    write(tmp_path / "good.py", GOOD)
    assert cli("check", "-q", "good.py").out == ""


def test_diff_writes_nothing_and_shows_the_change(cli, tmp_path):
    path = write(tmp_path / "bad.py", BAD)
    before = snapshot(tmp_path)
    result = cli("check", "--diff", "--select", "ZK401", "bad.py")
    assert snapshot(tmp_path) == before
    assert result.code == 1
    assert "-zk = KazooClient(hosts=\"h\", connection_retry=KazooRetry(max_tries=3))" in result.out
    assert "+zk = KazooClient(hosts=\"h\", connection_retry=KazooRetry(max_tries=-1))" in result.out
    assert result.out.startswith("--- ") and "+++ " in result.out
    assert not list(tmp_path.glob(".zklint-*"))
    assert path.read_text() == BAD


def test_diff_with_nothing_to_fix_exits_0(cli, tmp_path):
    write(tmp_path / "good.py", GOOD)
    result = cli("check", "--diff", "good.py")
    assert result.code == 0 and "---" not in result.out


def test_fix_rewrites_in_place(cli, tmp_path):
    path = write(tmp_path / "bad.py", BAD)
    result = cli("check", "--fix", "--select", "ZK401", "bad.py")
    assert result.code == 0, result
    assert path.read_text() == BAD_FIXED
    assert "1 fixed" in result.out
    assert not list(tmp_path.glob(".zklint-*"))  # no temp file left behind
    again = cli("check", "--fix", "--select", "ZK401", "bad.py")  # idempotent
    assert again.code == 0 and path.read_text() == BAD_FIXED


def test_fix_keeps_unfixable_findings_and_exits_1(cli, tmp_path):
    source = BAD.replace("KazooRetry(max_tries=3)", "KazooRetry(3, 0.1, 2, 0.4, 60.0, True, None, 10)")
    path = write(tmp_path / "bad.py", source)  # a positional deadline has no fix
    result = cli("check", "--fix", "--select", "ZK401", "bad.py")
    assert result.code == 1 and has_zk401(result)
    assert path.read_text() == source


# ---- files: excludes, .gitignore, default directories ---------------------------------------------

def _tree(root: Path) -> None:
    for rel in ["app/main.py", "app/gen/out.py", "app/skip_me.py", "lib/util.py"]:
        write(root / rel, BAD)


def found_files(result):
    return {f[0] for f in result.findings()}


def test_exclude_and_extend_exclude(cli, tmp_path):
    _tree(tmp_path)
    everything = cli("check", "--select", "ZK401", ".")
    assert found_files(everything) == {"main.py", "out.py", "skip_me.py", "util.py"}
    assert found_files(cli("check", "--select", "ZK401", "--exclude", "gen,skip_*.py", ".")) == {"main.py", "util.py"}
    assert found_files(cli("check", "--select", "ZK401", "--extend-exclude", "lib/", ".")) == {
        "main.py", "out.py", "skip_me.py"}
    assert found_files(cli("check", "--select", "ZK401", "--exclude", "/app/gen", ".")) == {
        "main.py", "skip_me.py", "util.py"}


def test_excluded_file_named_explicitly_is_skipped(cli, tmp_path):
    _tree(tmp_path)
    result = cli("check", "--select", "ZK401", "--exclude", "gen", "app/gen/out.py", "app/main.py")
    assert found_files(result) == {"main.py"}


def _git_init(root: Path) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True)


def test_gitignore_is_honoured_when_walking(cli, tmp_path):
    _git_init(tmp_path)
    _tree(tmp_path)
    write(tmp_path / ".gitignore", "gen/\n")
    write(tmp_path / "app" / ".gitignore", "skip_*.py\n")
    result = cli("check", "--select", "ZK401", ".")
    assert found_files(result) == {"main.py", "util.py"}
    assert found_files(cli("check", "--select", "ZK401", "--no-respect-gitignore", ".")) == {
        "main.py", "out.py", "skip_me.py", "util.py"}
    # walking a subdirectory still sees the .gitignore above it
    assert found_files(cli("check", "--select", "ZK401", "app")) == {"main.py"}
    # a file named explicitly is checked even when .gitignore lists it
    assert found_files(cli("check", "--select", "ZK401", "app/skip_me.py")) == {"skip_me.py"}


def test_gitignore_negation(cli, tmp_path):
    _git_init(tmp_path)
    _tree(tmp_path)
    write(tmp_path / ".gitignore", "app/*.py\n!app/main.py\n")
    assert found_files(cli("check", "--select", "ZK401", ".")) == {"main.py", "out.py", "util.py"}


@pytest.mark.parametrize("directory", [".git", "venv", ".venv", "build", "dist", "__pycache__", ".tox", "x.egg-info"])
def test_default_directories_are_skipped(cli, tmp_path, directory):
    write(tmp_path / "main.py", BAD)
    write(tmp_path / directory / "inner.py", BAD)
    assert found_files(cli("check", "--select", "ZK401", ".")) == {"main.py"}


def test_virtualenv_with_any_name_is_skipped(cli, tmp_path):
    write(tmp_path / "main.py", BAD)
    write(tmp_path / "myenv" / "pyvenv.cfg", "home = /usr/bin\n")
    write(tmp_path / "myenv" / "lib" / "inner.py", BAD)
    assert found_files(cli("check", "--select", "ZK401", ".")) == {"main.py"}


def test_each_file_reported_once(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    result = cli("check", "--select", "ZK401", ".", "bad.py", "./bad.py")
    assert len([line for line in result.out.splitlines() if ": ZK401 " in line]) == 1


def test_pyi_files_are_checked_and_other_suffixes_are_not(cli, tmp_path):
    write(tmp_path / "stub.pyi", BAD)
    write(tmp_path / "notes.txt", BAD)
    write(tmp_path / "script.pyw", BAD)
    assert found_files(cli("check", "--select", "ZK401", ".")) == {"stub.pyi"}


# ---- [tool.zklint] in pyproject.toml -------------------------------------------------------------

def _project(root: Path, table: str) -> None:
    write(root / "pyproject.toml", "[project]\nname = 'demo'\n\n[tool.zklint]\n" + table)
    _tree(root)


def test_config_select_and_ignore(cli, tmp_path):
    _project(tmp_path, 'select = ["ZK5"]\n')
    assert not has_zk401(cli("check", "."))
    assert has_zk401(cli("check", "--select", "ZK401", "."))  # the flag replaces the configured list
    assert has_zk401(cli("check", "--extend-select", "ZK4", "."))
    _project(tmp_path, 'ignore = ["ZK401"]\n')
    assert not has_zk401(cli("check", "."))
    # --select replaces select, but a configured ignore still applies (as in ruff)
    assert not has_zk401(cli("check", "--select", "ZK4", "."))


def test_config_exclude_overridden_by_flag(cli, tmp_path):
    _project(tmp_path, 'select = ["ZK401"]\nexclude = ["gen", "lib/"]\n')
    assert found_files(cli("check", ".")) == {"main.py", "skip_me.py"}
    assert found_files(cli("check", "--exclude", "skip_*.py", ".")) == {"main.py", "out.py", "util.py"}
    assert found_files(cli("check", "--extend-exclude", "skip_*.py", ".")) == {"main.py"}


def test_config_per_file_ignores(cli, tmp_path):
    _project(
        tmp_path, 'select = ["ZK401"]\n[tool.zklint.per-file-ignores]\n"app/gen/*" = ["ZK4"]\n"util.py" = ["ZK401"]\n'
    )
    assert found_files(cli("check", ".")) == {"main.py", "skip_me.py"}


def test_nearest_pyproject_wins(cli, tmp_path):
    _project(tmp_path, 'select = ["ZK401"]\n')
    inner = tmp_path / "sub"
    write(inner / "pyproject.toml", '[tool.zklint]\nignore = ["ZK4"]\n')
    write(inner / "pkg" / "bad.py", BAD)
    assert not has_zk401(cli("check", ".", cwd=inner / "pkg"))
    assert has_zk401(cli("check", ".", cwd=tmp_path / "app"))


def test_each_file_takes_its_nearest_pyproject_in_one_run(cli, tmp_path):
    _project(tmp_path, 'select = ["ZK401"]\n')
    inner = tmp_path / "lib" / "inner"
    write(inner / "pyproject.toml", '[tool.zklint]\nignore = ["ZK4"]\n')
    write(inner / "skip" / "pyproject.toml", '[tool.zklint]\nselect = ["ZK401"]\nexclude = ["d.py"]\n')
    for rel in ["deep/a.py", "b.py", "skip/d.py", "skip/e.py", "../other/c.py"]:
        write(inner / rel, BAD)
    expected = {"main.py", "out.py", "skip_me.py", "util.py", "c.py", "e.py"}
    assert found_files(cli("check", ".")) == expected
    # deeper directories first, then the ones above them and beside them
    assert found_files(cli("check", "lib/inner/skip/e.py", "lib/inner/skip/d.py", "lib/inner/deep/a.py",
                           "lib/inner/b.py", "lib/other/c.py", "lib/util.py", "app")) == expected


def test_pyproject_without_a_zklint_table_is_passed_over(cli, tmp_path):
    _project(tmp_path, 'ignore = ["ZK401"]\n')
    write(tmp_path / "sub" / "pyproject.toml", "[project]\nname = 'inner'\n")
    write(tmp_path / "sub" / "bad.py", BAD)
    assert not has_zk401(cli("check", ".", cwd=tmp_path / "sub"))


def test_explicit_config_file(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    write(tmp_path / "conf" / "strict.toml", '[tool.zklint]\nignore = ["ZK401"]\n')
    assert not has_zk401(cli("check", "--config", "conf/strict.toml", "bad.py"))


# ---- noqa -----------------------------------------------------------------------------------------

_LINE = 'zk = KazooClient(hosts="h", connection_retry=KazooRetry(max_tries=3))'


@pytest.mark.parametrize(
    "comment, suppressed",
    [
        ("# noqa", True),
        ("# noqa: ZK401", True),
        ("# noqa:ZK401", True),
        ("# NOQA: ZK401", True),
        ("# noqa: ZK4", True),
        ("# noqa: E501,ZK401", True),
        ("# noqa: E501, ZK401 -- retries handled elsewhere", True),
        ("# noqa: ZK999", False),
        ("# noqa: E501", False),
        ("# no qa", False),
    ],
)
def test_noqa(cli, tmp_path, comment, suppressed):
    write(tmp_path / "bad.py", BAD.replace(_LINE, f"{_LINE}  {comment}"))
    result = cli("check", "--select", "ZK401", "bad.py")
    assert has_zk401(result) is not suppressed
    assert result.code == (0 if suppressed else 1)


def test_noqa_findings_are_not_fixed(cli, tmp_path):
    source = BAD.replace(_LINE, f"{_LINE}  # noqa: ZK401")
    path = write(tmp_path / "bad.py", source)
    assert cli("check", "--fix", "bad.py").code in (0, 1)
    assert path.read_text() == source
