"""Rule options in [tool.zklint] reach the rules through the CLI (ZK402's session-timeout bounds)."""

from __future__ import annotations

import textwrap

import pytest

from zklint.cli import main

APP = textwrap.dedent(
    """\
    from kazoo.client import KazooClient

    zk = KazooClient(hosts="zk:2181", timeout=90)
    slow = KazooClient("zk:2181", 150.0)
    fast = KazooClient(hosts="zk:2181", timeout=3)
    """
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project directory with app.py; `write(config)` sets its [tool.zklint] table."""
    (tmp_path / "app.py").write_text(APP)
    monkeypatch.chdir(tmp_path)

    def write(table: str = "") -> None:
        (tmp_path / "pyproject.toml").write_text("[tool.zklint]\n" + textwrap.dedent(table))

    return write


def _zk402_lines(out: str) -> set:
    return {int(line.split(":")[1]) for line in out.splitlines() if " ZK402 " in line}


def test_defaults_flag_90_150_and_3_seconds(project, capsys):
    project()
    assert main(["check", "--select", "ZK402", "app.py"]) == 1
    assert _zk402_lines(capsys.readouterr().out) == {3, 4, 5}


def test_session_timeout_max_raises_the_upper_bound(project, capsys):
    project("session-timeout-max = 120\n")  # an integer is accepted for a float option
    assert main(["check", "--select", "ZK402", "app.py"]) == 1
    out = capsys.readouterr().out
    assert _zk402_lines(out) == {4, 5}  # 90 s is fine now; 150 s and 3 s still are not
    assert "150 s is above 120 s" in out


def test_both_bounds_configured_make_the_file_clean(project, capsys):
    project("session-timeout-min = 2.5\nsession-timeout-max = 200.0\n")
    assert main(["check", "--select", "ZK402", "app.py"]) == 0
    assert _zk402_lines(capsys.readouterr().out) == set()


@pytest.mark.parametrize("value", ['"120"', "true", "[120]"])
def test_wrong_type_is_a_one_line_error_naming_the_key(project, capsys, value):
    project(f"session-timeout-max = {value}\n")
    assert main(["check", "--select", "ZK402", "app.py"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "session-timeout-max" in lines[0] and "float" in lines[0]
    assert "ZK402" not in captured.out


def test_the_options_table_is_what_the_rules_declare():
    """flake8 and the configuration read `RULE_OPTIONS` without importing the rules: it
    must be exactly the union of the registered rules' `options`."""
    from zklint.rules import all_rules
    from zklint.rules.options import RULE_OPTIONS

    declared = {}
    for rule in all_rules().values():
        for key, spec in rule.options.items():
            assert key not in declared, f"{key} declared twice"
            declared[key] = spec
    assert declared == RULE_OPTIONS
