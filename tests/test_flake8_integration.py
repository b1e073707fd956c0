"""The flake8 plugin, through the real flake8 run as a subprocess with its own config files."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.cli_support import run, run_zklint, write
from zklint import flake8_plugin
from zklint.flake8_plugin import ZkLintChecker
from zklint.rules import all_rules


def _plugin_installed() -> bool:
    entry_points = metadata.entry_points()
    group = entry_points.select(group="flake8.extension") if hasattr(entry_points, "select") else entry_points.get(
        "flake8.extension", []
    )
    return any(ep.value.startswith("zklint.") for ep in group)


needs_plugin = pytest.mark.skipif(not _plugin_installed(), reason="zklint is not installed (pip install -e .)")

# Line 4: ZK401 and ZK402 (timeout=1); line 5: ZK401 under noqa; line 6: ZK402 (90 s).
APP = (
    "from kazoo.client import KazooClient\n"
    "from kazoo.retry import KazooRetry\n"
    "\n"
    'zk = KazooClient(hosts="h", connection_retry=KazooRetry(max_tries=3), timeout=1)\n'
    'quiet = KazooClient(hosts="h", connection_retry=KazooRetry(max_tries=2))  # noqa: ZK401\n'
    'slow = KazooClient(hosts="h", timeout=90)\n'
)
LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<code>ZK\d+) (?P<message>.*)$")


def flake8(cwd: Path, *args: str):
    return run([sys.executable, "-m", "flake8", *args], cwd)


def zk_findings(text: str) -> list:
    """(path, line, col, code, message) of every ZK line, paths with forward slashes."""
    found = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            found.append((match["path"].replace("\\", "/").removeprefix("./"), int(match["line"]),
                          int(match["col"]), match["code"], match["message"]))
    return sorted(found)


def codes_by_line(text: str) -> set:
    return {(path, line, code) for path, line, _, code, _ in zk_findings(text)}


@pytest.fixture
def project(tmp_path):
    write(tmp_path / "app.py", APP)
    write(tmp_path / "legacy" / "old.py", APP)
    return tmp_path


@needs_plugin
def test_version_and_help_list_the_plugin_and_its_options(project):
    version = flake8(project, "--version")
    assert re.search(r"\bzklint: \d", version.out), version.out
    help_text = flake8(project, "--help").out
    options = {key for rule in all_rules().values() for key in rule.options}
    assert options, "no rule declares an option"
    for key in options:
        assert f"--zklint-{key}" in help_text


@needs_plugin
def test_select_prefixes(project):
    everything = flake8(project, "--select", "ZK", "app.py")
    assert everything.code == 1
    assert codes_by_line(everything.out) == {("app.py", 4, "ZK401"), ("app.py", 4, "ZK402"), ("app.py", 6, "ZK402")}
    only = flake8(project, "--select", "ZK40", "--ignore", "ZK401", "app.py")
    assert codes_by_line(only.out) == {("app.py", 4, "ZK402"), ("app.py", 6, "ZK402")}
    none = flake8(project, "--select", "ZK1", "app.py")
    assert none.code == 0 and none.out == ""


@needs_plugin
def test_noqa_is_flake8s(project):
    result = flake8(project, "--select", "ZK", "--disable-noqa", "app.py")
    assert ("app.py", 5, "ZK401") in codes_by_line(result.out)


@needs_plugin
@pytest.mark.parametrize("config_name", ["setup.cfg", "tox.ini", ".flake8"])
def test_per_file_ignores_and_rule_options_from_config(project, config_name):
    write(project / config_name, (
        "[flake8]\n"
        "select = ZK\n"
        "per-file-ignores =\n"
        "    legacy/*.py: ZK401\n"
        "zklint-session-timeout-max = 120\n"
    ))
    result = flake8(project, ".")
    assert result.code == 1, result.err
    assert codes_by_line(result.out) == {
        ("app.py", 4, "ZK401"), ("app.py", 4, "ZK402"),  # 90 s is within the configured 120 s
        ("legacy/old.py", 4, "ZK402"),
    }


@needs_plugin
def test_rule_option_on_the_command_line(project):
    result = flake8(project, "--select", "ZK402", "--zklint-session-timeout-min", "0.5", "app.py")
    assert codes_by_line(result.out) == {("app.py", 6, "ZK402")}


@needs_plugin
def test_flake8_reports_what_zklint_check_reports(project, tmp_path):
    """Same files, no config: the same positions, codes and messages.

    (Every fixture of every rule goes through the plugin in-process in test_fixtures.py;
    here the real flake8 reads the ZK4 fixtures, a CRLF file and columns after non-ASCII text.)
    """
    fixtures = Path(__file__).resolve().parent / "fixtures"
    write(project / "samples" / "crlf.py", APP.replace("\n", "\r\n"))
    write(project / "samples" / "wide.py", APP.replace('zk = KazooClient(', 'label = "日本語"; zk = KazooClient('))
    files = ["app.py", "legacy/old.py", "samples/crlf.py", "samples/wide.py"]
    for path in sorted(fixtures.glob("ZK4*/*.py")):
        if not path.name.endswith(".fixed.py"):
            target = f"samples/{path.parent.name}_{path.name}"
            (project / target).parent.mkdir(exist_ok=True)
            (project / target).write_bytes(path.read_bytes())
            files.append(target)
    ours = run_zklint(["check", "--output-format", "concise", "-j", "1", *files], project)
    assert ours.code == 1, ours.err
    theirs = flake8(project, "--isolated", "--select", "ZK", *files)
    assert zk_findings(theirs.out) == zk_findings(ours.out)
    assert len(zk_findings(ours.out)) >= 4


# ---- in-process: the plugin never raises into flake8 ----------------------------------------

def test_an_internal_error_is_one_reported_line(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    import zklint.engine

    monkeypatch.setattr(zklint.engine, "lint_tree", broken)
    checker = ZkLintChecker(ast.parse(APP), APP.splitlines(keepends=True), "app.py")
    (result,) = list(checker.run())
    line, col, message, kind = result
    assert (line, col, kind) == (1, 0, ZkLintChecker)
    assert message.startswith("ZK000 zklint internal error") and "KeyError" in message
    assert "\n" not in message


def test_files_without_kazoo_are_skipped_and_no_lines_still_works():
    assert list(ZkLintChecker(ast.parse("x = 1\n"), ["x = 1\n"], "x.py").run()) == []
    findings = list(ZkLintChecker(ast.parse(APP), None, "app.py").run())
    assert {message.split()[0] for _, _, message, _ in findings} == {"ZK401", "ZK402"}


class _Manager:
    def __init__(self):
        self.added = {}

    def add_option(self, name, **settings):
        self.added[name] = settings


def test_options_of_every_kind(monkeypatch):
    declared = {
        "max-depth": (int, 3, "how deep"),
        "strict": (bool, False, "be strict"),
        "names": (list, ["a"], "which names"),
        "label": (str, "x", "100% a label"),
    }
    monkeypatch.setattr(flake8_plugin, "_declared_options", lambda: declared)
    manager = _Manager()
    ZkLintChecker.add_options(manager)
    assert set(manager.added) == {"--zklint-max-depth", "--zklint-strict", "--zklint-names", "--zklint-label"}
    assert all(s["parse_from_config"] for s in manager.added.values())
    assert manager.added["--zklint-max-depth"]["type"] is int
    assert manager.added["--zklint-names"]["comma_separated_list"] is True
    assert "100%% a label" in manager.added["--zklint-label"]["help"]  # argparse formats help with %
    convert = manager.added["--zklint-strict"]["type"]
    assert convert("yes") is True and convert("False") is False
    with pytest.raises(ValueError):
        convert("maybe")

    class Options:
        zklint_max_depth, zklint_strict, zklint_names, zklint_label = 5, True, "b, c", "y"

    monkeypatch.setattr(ZkLintChecker, "rule_options", {})
    ZkLintChecker.parse_options(Options)
    assert ZkLintChecker.rule_options == {"max-depth": 5, "strict": True, "names": ["b", "c"], "label": "y"}
