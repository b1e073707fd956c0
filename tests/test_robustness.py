"""No crash, no lost byte, on any input.

Every bad input gets one line on stderr (``path: error: ...``), the other files are
still checked, and the exit status is 2 when any file failed. ``--fix`` writes
atomically and never writes code that does not parse. Files without the text "azoo"
are never parsed, so every bad input here names kazoo.
"""

from __future__ import annotations

import ast
import builtins
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_support import (
    BAD,
    BAD_FIXED,
    assert_no_traceback,
    clean_env,
    is_root,
    run_main,
    write,
    zklint_command,
)
from zklint import checking as checking_module
from zklint import cli as cli_module
from zklint import engine
from zklint.engine import check_bytes
from zklint.rules import all_rules
from zklint.findings import Edit, Safety
from zklint.rules.base import Rule
from zklint.source import SourceFile

ZK401 = [all_rules()["ZK401"]]


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    def invoke(*args, cwd: Path = tmp_path):
        return run_main([str(a) for a in args], capsys, cwd=cwd, monkeypatch=monkeypatch)

    return invoke


def assert_one_error(result, name: str, *fragments: str) -> str:
    """Exactly one ``name: error: ...`` line for `name`; returns it."""
    lines = [line for line in result.err.splitlines() if line.startswith(f"{name}: error: ")]
    assert len(lines) == 1, result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.err and "Traceback" not in result.out
    return lines[0]


# ---- bad inputs, one line each, the good file still checked --------------------------------------

BAD_INPUTS = {
    "syntax.py": (b"import kazoo\ndef f(:\n    pass\n", "syntax error at line 2"),
    "cookie.py": (b"# -*- coding: klingon -*-\nimport kazoo\n", "unknown encoding: klingon"),
    "undecodable.py": (b"import kazoo\nname = '\xff\xfe\xfa'\n", "cannot decode as utf-8"),
    "latin_no_cookie.py": (b"import kazoo\n# caf\xe9\n", "cannot decode"),
    "nul.py": (b"import kazoo\x00\nzk = 1\n", "NUL"),
    "binary.py": (bytes(range(256)) * 40 + b"kazoo", "cannot decode"),
    "bom_and_cookie.py": (b"\xef\xbb\xbf# coding: latin-1\nimport kazoo\n", "encoding problem"),
    "deep_parens.py": (b"import kazoo\nx = " + b"(" * 500 + b"1" + b")" * 500 + b"\n", "nested"),
    "deep_unary.py": (b"import kazoo\nx = " + b"-" * 200_000 + b"1\n", "too deeply nested"),
    "tabs_and_spaces.py": (b"import kazoo\nif True:\n        x = 1\n\ty = 2\n", "syntax error"),
    "unterminated.py": (b"import kazoo\nx = '''never closed\n", "syntax error"),
    "py2.py": (b"import kazoo\nprint 'hello'\n", "syntax error at line 2"),
}
DEEP_BINOP = b"import kazoo\nx = 1" + b" + 1" * 200_000 + b"\n"
# Python 3.11+ refuses this during ast construction; older ones overflow the C stack
# there (a crash of the whole process), so zklint parses it on a large thread stack and
# checks it like any other file (zklint.source.parse_module).
if sys.version_info >= (3, 11):
    BAD_INPUTS["deep_binop.py"] = (DEEP_BINOP, "too deeply nested")


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_others_are_checked(cli, tmp_path, name):
    raw, fragment = BAD_INPUTS[name]
    (tmp_path / name).write_bytes(raw)
    write(tmp_path / "zz_good_file.py", BAD)
    write(tmp_path / "aa_good_file.py", BAD)
    result = cli("check", "--select", "ZK401", ".")
    assert result.code == 2
    assert_one_error(result, f"./{name}", fragment)
    assert {f[0] for f in result.findings()} == {"aa_good_file.py", "zz_good_file.py"}
    assert len(result.error_lines()) == 1


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_with_fix_is_left_alone(cli, tmp_path, name):
    raw, _ = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(raw)
    good = write(tmp_path / "good.py", BAD)
    result = cli("check", "--fix", "--unsafe-fixes", "--select", "ZK401", ".")
    assert result.code == 2
    assert path.read_bytes() == raw
    assert good.read_text() == BAD_FIXED


def test_a_deep_expression_never_kills_the_run(cli, tmp_path):
    (tmp_path / "deep.py").write_bytes(DEEP_BINOP + BAD.encode())
    write(tmp_path / "good.py", BAD)
    result = cli("check", "--select", "ZK401", ".")
    assert_no_traceback(result)
    assert result.code in (1, 2)
    files = {f[0] for f in result.findings()}
    if sys.version_info >= (3, 11):
        assert_one_error(result, "./deep.py", "too deeply nested")
        assert files == {"good.py"}
    else:  # parsed on a large stack: checked, its finding reported
        assert result.error_lines() == []
        assert files == {"deep.py", "good.py"}


def test_parsing_on_a_large_stack_hands_back_trees_and_errors(monkeypatch):
    from zklint import source

    tree = source._parse_on_a_large_stack("x = f(1)\n", "x.py")
    assert isinstance(tree.body[0], ast.Assign)
    with pytest.raises(SyntaxError) as caught:
        source._parse_on_a_large_stack("x = (\n", "bad.py")
    assert caught.value.filename == "bad.py"
    monkeypatch.setattr(source, "_MAX_STACK_BYTES", 1 << 20)
    with pytest.raises(MemoryError):
        source._parse_on_a_large_stack("x = 1\n" * 10_000, "big.py")


def test_all_bad_inputs_at_once(cli, tmp_path):
    for name, (raw, _) in BAD_INPUTS.items():
        (tmp_path / name).write_bytes(raw)
    write(tmp_path / "good.py", BAD)
    result = cli("check", "--select", "ZK401", "-j", "2", ".")
    assert result.code == 2
    assert len(result.error_lines()) == len(BAD_INPUTS)
    assert {f[0] for f in result.findings()} == {"good.py"}


def test_empty_and_whitespace_files_are_fine(cli, tmp_path):
    write(tmp_path / "empty.py", "")
    write(tmp_path / "kazoo_comment_only.py", "# kazoo\n")
    write(tmp_path / "blank.py", "\n\n   \n")
    (tmp_path / "bom_only.py").write_bytes(b"\xef\xbb\xbf# kazoo")
    result = cli("check", "--fix", ".")
    assert result.code == 0, result.err
    assert result.err == ""


def test_files_without_kazoo_are_never_parsed(cli, tmp_path):
    (tmp_path / "garbage.py").write_bytes(b"\x00\xff def (:")
    result = cli("check", ".")
    assert result.code == 0 and result.err == ""


def test_huge_file(cli, tmp_path):
    body = "".join(f"def handler_{i}(event):\n    return event + {i}\n\n" for i in range(10_000))
    path = write(tmp_path / "huge.py", BAD + body + BAD.split("\n\n")[1])
    start = time.monotonic()
    result = cli("check", "--select", "ZK401", "huge.py")
    assert result.code == 1, result.err
    assert ("huge.py", 4, 46, "ZK401") in result.findings()
    assert len(result.findings()) == 2
    fixed = cli("check", "--fix", "--select", "ZK401", "huge.py")
    assert time.monotonic() - start < 60
    assert fixed.code == 0, fixed.err
    assert path.read_text().count("max_tries=-1") == 2
    assert path.stat().st_size > 400_000


def test_huge_single_line(cli, tmp_path):
    write(tmp_path / "wide.py", BAD + "x = [" + "1, " * 300_000 + "]\n")
    result = cli("check", "--select", "ZK401", "wide.py")
    assert result.code == 1 and result.err == ""


def test_directory_named_like_a_python_file(cli, tmp_path):
    write(tmp_path / "pkg.py" / "inner.py", BAD)
    result = cli("check", "--select", "ZK401", "pkg.py")
    assert result.code == 1 and {f[0] for f in result.findings()} == {"inner.py"}
    (tmp_path / "empty.py").mkdir()
    result = cli("check", "--select", "ZK401", ".")
    assert result.code == 1 and result.err == ""


def test_nonexistent_paths(cli, tmp_path):
    write(tmp_path / "good.py", BAD)
    result = cli("check", "--select", "ZK401", "missing.py", "missing_dir/", "good.py")
    assert result.code == 2
    assert_one_error(result, "missing.py", "no such file")
    assert_one_error(result, "missing_dir/", "no such file")
    assert ("good.py", 4, 46, "ZK401") in result.findings()


def test_broken_symlinks(cli, tmp_path):
    write(tmp_path / "good.py", BAD)
    os.symlink(tmp_path / "nowhere.py", tmp_path / "dangling.py")
    walked = cli("check", "--select", "ZK401", ".")
    assert walked.code == 2
    assert_one_error(walked, "./dangling.py", "broken symbolic link")
    named = cli("check", "--select", "ZK401", "dangling.py", "good.py")
    assert named.code == 2
    assert_one_error(named, "dangling.py", "broken symbolic link")
    assert ("good.py", 4, 46, "ZK401") in named.findings()


def test_symlink_loop_does_not_hang(cli, tmp_path):
    write(tmp_path / "good.py", BAD)
    os.symlink(tmp_path, tmp_path / "loop")
    os.symlink(tmp_path / "self.py", tmp_path / "self.py")
    result = cli("check", "--select", "ZK401", ".")
    assert "good.py" in {f[0] for f in result.findings()}
    assert_no_traceback(result)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_py_does_not_block_a_walk(cli, tmp_path):
    write(tmp_path / "good.py", BAD)
    os.mkfifo(tmp_path / "pipe.py")
    result = cli("check", "--select", "ZK401", ".")
    assert result.code == 1 and {f[0] for f in result.findings()} == {"good.py"}


def test_unreadable_file(cli, tmp_path, monkeypatch):
    secret = write(tmp_path / "secret.py", BAD)
    write(tmp_path / "good.py", BAD)
    if is_root():  # root reads mode 000 files anyway: make open() refuse instead
        real_open = builtins.open

        def refusing_open(file, *args, **kwargs):
            if os.path.basename(str(file)) == "secret.py":
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)
    else:
        secret.chmod(0)
    try:
        result = cli("check", "--select", "ZK401", "secret.py", "good.py")
    finally:
        secret.chmod(0o644)
    assert result.code == 2
    assert_one_error(result, "secret.py", "cannot read: Permission denied")
    assert ("good.py", 4, 46, "ZK401") in result.findings()


@pytest.mark.skipif(is_root(), reason="root can write into a read-only directory")
def test_unwritable_directory_with_fix(cli, tmp_path):
    path = write(tmp_path / "ro" / "bad.py", BAD)
    (tmp_path / "ro").chmod(0o555)
    try:
        result = cli("check", "--fix", "--select", "ZK401", "ro/bad.py")
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert result.code == 2
    assert_one_error(result, "ro/bad.py", "cannot write")
    assert path.read_text() == BAD


def test_write_failure_leaves_the_original_and_no_temp_file(cli, tmp_path, monkeypatch):
    path = write(tmp_path / "bad.py", BAD)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    result = cli("check", "--fix", "--select", "ZK401", "bad.py")
    assert result.code == 2
    assert_one_error(result, "bad.py", "cannot write: No space left on device")
    assert path.read_text() == BAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.py"]
    assert ("bad.py", 4, 46, "ZK401") in result.findings()  # the finding is still reported


def test_file_changed_while_being_checked(cli, tmp_path, monkeypatch):
    path = write(tmp_path / "bad.py", BAD)
    edited = BAD + "# edited by someone else meanwhile\n"
    import zklint.engine

    real = zklint.engine.check_bytes

    def check_then_edit(*args, **kwargs):
        report = real(*args, **kwargs)
        if kwargs.get("fix"):  # between reading the file to fix it and writing it back
            path.write_text(edited)
        return report

    monkeypatch.setattr(zklint.engine, "check_bytes", check_then_edit)
    result = cli("check", "--fix", "--select", "ZK401", "bad.py")
    assert result.code == 2
    assert_one_error(result, "bad.py", "changed while being fixed")
    assert path.read_text() == edited


def test_file_removed_while_being_checked(cli, tmp_path, monkeypatch):
    path = write(tmp_path / "bad.py", BAD)
    write(tmp_path / "good.py", BAD)
    import zklint.engine

    real = zklint.engine.check_bytes

    def check_then_remove(raw, name, *args, **kwargs):
        report = real(raw, name, *args, **kwargs)
        if name.endswith("bad.py") and kwargs.get("fix"):
            path.unlink()
        return report

    monkeypatch.setattr(zklint.engine, "check_bytes", check_then_remove)
    result = cli("check", "--fix", "--select", "ZK401", "bad.py", "good.py")
    assert result.code == 2
    assert_one_error(result, "bad.py", "disappeared")
    assert not path.exists()
    assert (tmp_path / "good.py").read_text() == BAD_FIXED


def test_file_removed_between_walk_and_read(cli, tmp_path, monkeypatch):
    write(tmp_path / "a.py", BAD)
    write(tmp_path / "b.py", BAD)
    real = cli_module.discover

    def discover_then_remove(*args, **kwargs):
        found = list(real(*args, **kwargs))
        (tmp_path / "a.py").unlink()
        return iter(found)

    monkeypatch.setattr(cli_module, "discover", discover_then_remove)
    result = cli("check", "--select", "ZK401", ".")
    assert result.code == 2
    assert_one_error(result, "./a.py", "cannot read")
    assert {f[0] for f in result.findings()} == {"b.py"}


# ---- atomic writes -----------------------------------------------------------------------------

def test_fix_keeps_mode_bits(cli, tmp_path):
    path = write(tmp_path / "bad.py", BAD)
    path.chmod(0o751)
    assert cli("check", "--fix", "--select", "ZK401", "bad.py").code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o751
    assert path.read_text() == BAD_FIXED


def test_fix_through_a_symlink_keeps_the_link(cli, tmp_path):
    real = write(tmp_path / "real" / "bad.py", BAD)
    link = tmp_path / "link.py"
    os.symlink(real, link)
    assert cli("check", "--fix", "--select", "ZK401", "link.py").code == 0
    assert link.is_symlink()
    assert real.read_text() == BAD_FIXED


def test_fix_replaces_the_inode_not_the_contents(cli, tmp_path):
    """Readers holding the old file see the old bytes whole: the new file is renamed in."""
    path = write(tmp_path / "bad.py", BAD)
    with open(path, "rb") as reader:
        assert cli("check", "--fix", "--select", "ZK401", "bad.py").code == 0
        assert reader.read() == BAD.encode()
    assert path.read_text() == BAD_FIXED


class _BreakingRule(Rule):
    """A rule whose fix produces code that does not parse."""

    code = "ZK990"
    name = "test-breaking-fix"
    summary = why = example = use_instead = ""
    fix_safety = Safety.SAFE

    def check(self):
        for node in ast.walk(self.model.tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "KazooClient":
                yield self.finding(node, "breaks", "break it", self._build(node))

    @staticmethod
    def _build(node):
        def build(source: SourceFile):
            start, end = source.node_span(node)
            return [Edit(start, end, "KazooClient(((")]

        return build


class _RaisingFixRule(_BreakingRule):
    code = "ZK991"

    @staticmethod
    def _build(node):
        def build(source):
            raise KeyError("bug in a fix")

        return build


class _RaisingCheckRule(_BreakingRule):
    code = "ZK992"

    def check(self):
        raise AttributeError("bug in a check")
        yield  # pragma: no cover


class _BadEditRule(_BreakingRule):
    code = "ZK993"

    @staticmethod
    def _build(node):
        return lambda source: [Edit(len(source.text) + 50, len(source.text) + 60, "x")]


def test_a_fix_that_would_not_parse_is_never_applied():
    raw = BAD.encode()
    report = check_bytes(raw, "x.py", [_BreakingRule], fix=True)
    assert report.new_bytes is None and not report.fixed
    assert [f.code for f in report.findings] == ["ZK990"]
    assert len(report.errors) == 1 and "would not parse" in report.errors[0]


def test_a_fix_that_would_not_parse_does_not_block_others():
    report = check_bytes(BAD.encode(), "x.py", [_BreakingRule] + ZK401, fix=True)
    assert report.new_bytes == BAD_FIXED.encode()
    assert [f.code for f in report.fixed] == ["ZK401"]


def test_a_fix_that_raises_is_one_error_and_others_still_apply():
    report = check_bytes(BAD.encode(), "x.py", [_RaisingFixRule] + ZK401, fix=True)
    assert report.new_bytes == BAD_FIXED.encode()
    assert len(report.errors) == 1 and "ZK991" in report.errors[0] and "KeyError" in report.errors[0]
    assert [f.code for f in report.findings] == ["ZK991"]


def test_an_edit_out_of_range_is_refused():
    report = check_bytes(BAD.encode(), "x.py", [_BadEditRule] + ZK401, fix=True)
    assert report.new_bytes == BAD_FIXED.encode()


def test_a_check_that_raises_is_one_internal_error_line():
    report = check_bytes(BAD.encode(), "x.py", [_RaisingCheckRule] + ZK401)
    assert len(report.errors) == 1
    assert report.errors[0].startswith("internal error: AttributeError: bug in a check")
    assert "\n" not in report.errors[0]


def test_internal_error_through_the_cli(cli, tmp_path, monkeypatch):
    write(tmp_path / "a.py", BAD)
    write(tmp_path / "b.py", BAD.replace("max_tries=3", "max_tries=4"))
    real = engine.lint_model

    def lint_model(model, rules, source, options):
        if source.path.endswith("a.py"):
            raise ZeroDivisionError("boom")
        return real(model, rules, source, options)

    monkeypatch.setattr(engine, "lint_model", lint_model)
    result = cli("check", "--select", "ZK401", "a.py", "b.py")
    assert result.code == 2
    assert_one_error(result, "a.py", "internal error", "ZeroDivisionError")
    assert ("b.py", 4, 46, "ZK401") in result.findings()


def test_fix_that_cannot_be_encoded_is_refused():
    """A fix adding characters the file's declared encoding cannot hold is not written."""

    class _Unicode(_BreakingRule):
        code = "ZK994"

        def check(self):
            if "\u2603" not in self.context.source.text:
                yield from super().check()

        @staticmethod
        def _build(node):
            def build(source):
                start, end = source.node_span(node)
                return [Edit(start, end, source.segment(node) + "  # \u2603")]

            return build

    raw = ("# -*- coding: latin-1 -*-\n" + BAD).encode("latin-1")
    report = check_bytes(raw, "x.py", [_Unicode], fix=True)
    assert report.new_bytes is None
    assert len(report.errors) == 1 and "cannot be written as iso-8859-1" in report.errors[0], report.errors


# ---- deep nesting: the model's recursion -----------------------------------------------------------

def _deep_programs():
    client = "from kazoo.client import KazooClient\nfrom kazoo.retry import KazooRetry\n"
    chain = "".join(f"c{i + 1} = c{i}\n" for i in range(3000))
    yield "alias_chain", client + "c0 = KazooClient()\n" + chain + "c3000.start()\n"
    yield "annotation_chain", client + "zk: KazooClient" + " | None" * 2000 + " = None\n"
    yield "nested_defs", client + "".join("    " * i + f"def f{i}():\n" for i in range(95)) + "    " * 95 + "zk = KazooClient()\n"
    yield "nested_calls", client + "zk = KazooClient(connection_retry=KazooRetry(max_tries=3, delay=" + "f(" * 180 + ")" * 180 + "))\n"
    yield "deep_attribute", client + "zk = KazooClient(connection_retry=KazooRetry(max_tries=3, delay=x" + ".a" * 5000 + "))\n"
    yield "deep_boolop", client + "zk = KazooClient(connection_retry=KazooRetry(max_tries=3, delay=" + " or ".join(["a"] * 5000) + "))\n"
    yield "deep_unary_arg", client + "zk = KazooClient(connection_retry=KazooRetry(max_tries=3, delay=" + "-" * 900 + "1))\n"
    yield "deep_subscript", client + "zk = KazooClient(connection_retry=KazooRetry(max_tries=3, delay=x" + "[0]" * 3000 + "))\n"
    yield "deep_lambda", client + "cb = " + "lambda: " * 1000 + "KazooClient()\n"
    yield "many_unaries_in_max_tries", client + "zk = KazooClient(connection_retry=KazooRetry(max_tries=" + "-" * 990 + "3))\n"


@pytest.mark.parametrize("name, program", list(_deep_programs()), ids=[n for n, _ in _deep_programs()])
def test_deep_programs_never_crash(name, program):
    for fix in (False, True):
        report = check_bytes(program.encode(), f"{name}.py", list(all_rules().values()), fix=fix, unsafe_fixes=True)
        for error in report.errors:
            assert "\n" not in error
            assert "internal error" not in error, error
        if report.new_bytes is not None:
            ast.parse(report.new_bytes)


def test_deep_programs_through_the_cli(cli, tmp_path):
    for name, program in _deep_programs():
        write(tmp_path / f"{name}.py", program)
    write(tmp_path / "zz_good.py", BAD)
    result = cli("check", "--diff", "--unsafe-fixes", ".")
    assert_no_traceback(result)
    assert "zz_good.py" in result.out


def test_recursion_in_the_model_is_caught_per_file(cli, tmp_path, monkeypatch):
    from zklint import model

    write(tmp_path / "a.py", BAD)
    write(tmp_path / "b.py", BAD.replace("max_tries=3", "max_tries=4"))
    real = model.ModuleModel.__init__

    def recursing(self, tree, facts=None):
        if any(isinstance(n, ast.Constant) and n.value == 3 for n in ast.walk(tree)):
            def down(n):
                return down(n + 1)

            down(0)
        real(self, tree, facts)

    monkeypatch.setattr(model.ModuleModel, "__init__", recursing)
    result = cli("check", "--select", "ZK401", "a.py", "b.py")
    assert result.code == 2
    assert_one_error(result, "a.py", "too deeply nested")
    assert ("b.py", 4, 46, "ZK401") in result.findings()


# ---- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "table, fragment",
    [
        ('select = "ZK4"', "[tool.zklint] select must be a list of strings"),
        ('ignore = [4]', "[tool.zklint] ignore must be a list of strings"),
        ('exclude = "build"', "[tool.zklint] exclude must be a list of strings"),
        ('selct = ["ZK4"]', "[tool.zklint] selct: unknown key"),
        ('select = ["ZK999"]', "select: unknown rule selector 'ZK999'"),
        ('per-file-ignores = { "a.py" = "ZK401" }', "[tool.zklint] per-file-ignores must map"),
        ('per-file-ignores = { "a.py" = ["ZK7"] }', "per-file-ignores 'a.py': unknown rule selector 'ZK7'"),
        ('respect-gitignore = "yes"', "[tool.zklint] respect-gitignore must be true or false"),
        ('session-timeout-min = "soon"', "[tool.zklint] session-timeout-min must be of type float"),
        ('select = [', "invalid TOML"),
        ("select = ['ZK4'\nignore = []", "invalid TOML"),
    ],
)
def test_malformed_config_is_one_line_naming_the_key(cli, tmp_path, table, fragment):
    write(tmp_path / "pyproject.toml", "[tool.zklint]\n" + table + "\n")
    write(tmp_path / "bad.py", BAD)
    result = cli("check", "bad.py")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("zklint: error: ") and "pyproject.toml" in lines[0]
    assert fragment in lines[0], lines[0]
    assert result.out == ""


@pytest.mark.parametrize("text", ["tool = 3\n", "[tool]\nzklint = 3\n", "\xff\xfe"])
def test_config_of_the_wrong_shape(cli, tmp_path, text):
    (tmp_path / "conf.toml").write_bytes(text.encode("latin-1"))
    write(tmp_path / "bad.py", BAD)
    result = cli("check", "--config", "conf.toml", "bad.py")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert result.err.startswith("zklint: error: conf.toml: ")


def test_missing_config_file(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    result = cli("check", "--config", "nope.toml", "bad.py")
    assert result.code == 2 and result.err.strip() == "zklint: error: nope.toml: cannot read: No such file or directory"


def test_bad_jobs_value(cli, tmp_path):
    write(tmp_path / "bad.py", BAD)
    result = cli("check", "-j", "-1", "bad.py")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1


# ---- concurrency ------------------------------------------------------------------------------

def test_concurrent_fix_runs_never_tear_a_file(tmp_path):
    """Several ``zklint --fix`` processes on one tree: every file ends original or fully fixed."""
    originals = {}
    for i in range(40):
        text = BAD.replace("max_tries=3", f"max_tries={i % 7}") + "".join(
            f"\ndef handler_{i}_{j}(event):\n    return event\n" for j in range(200)
        )
        path = write(tmp_path / f"pkg{i % 4}" / f"mod_{i}.py", text)
        originals[path] = text
    command = zklint_command() + ["--fix", "--select", "ZK401", "-j", "2", "."]
    procs = [
        subprocess.Popen(command, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
        for _ in range(5)
    ]
    results = [(p.wait(timeout=300), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    for code, out, err in results:
        assert "Traceback" not in out + err and "internal error" not in out + err, err
        assert code in (0, 1, 2)
        for line in err.splitlines():  # the only acceptable trouble: a race another run won
            assert line.endswith("changed while being fixed; left as it is") or not line.strip(), line
    for path, text in originals.items():
        now = path.read_text()
        fixed = BAD_FIXED + text[len(BAD):]
        assert now == fixed, path  # at least one run fixed each file, and fixed it whole
        ast.parse(now)
    leftovers = [p for p in tmp_path.rglob(".zklint-*")]
    assert not leftovers


def test_readers_never_see_a_torn_file(tmp_path):
    """While fixes run, a reader polling the files only ever sees complete versions."""
    path = write(tmp_path / "big.py", BAD + "".join(f"x_{i} = {i}\n" for i in range(20_000)))
    original = path.read_bytes()
    fixed = original.replace(b"max_tries=3", b"max_tries=-1")
    command = zklint_command() + ["--fix", "--select", "ZK401", "big.py"]
    proc = subprocess.Popen(command, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    seen = set()
    while proc.poll() is None:
        data = path.read_bytes()
        assert data in (original, fixed)
        seen.add(data == fixed)
    assert proc.wait() == 0, proc.stderr.read()
    proc.stderr.close()
    assert path.read_bytes() == fixed


# ---- the flake8 plugin ------------------------------------------------------------------------------

def test_flake8_plugin_never_raises(monkeypatch):
    from zklint import engine, flake8_plugin

    lines = BAD.splitlines(keepends=True)
    tree = ast.parse(BAD)

    def boom(*args, **kwargs):
        raise RuntimeError("rule bug")

    monkeypatch.setattr(engine, "lint_tree", boom)
    results = list(flake8_plugin.ZkLintChecker(tree, lines, "x.py").run())
    assert len(results) == 1 and results[0][2].startswith("ZK000")

    def recursion(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(engine, "lint_tree", recursion)
    results = list(flake8_plugin.ZkLintChecker(tree, lines, "x.py").run())
    assert len(results) == 1 and results[0][2].startswith("ZK000")


@pytest.mark.parametrize("name, program", list(_deep_programs()), ids=[n for n, _ in _deep_programs()])
def test_flake8_plugin_on_deep_programs(name, program):
    from zklint.flake8_plugin import ZkLintChecker

    try:
        tree = ast.parse(program)
    except (SyntaxError, RecursionError, MemoryError):
        pytest.skip("flake8 would not get a tree either")
    # Never raises into flake8; at worst one ZK000 line says zklint could not analyse it.
    results = list(ZkLintChecker(tree, program.splitlines(keepends=True), f"{name}.py").run())
    problems = [message for _, _, message, _ in results if message.startswith("ZK000")]
    assert len(problems) <= 1
    for _, _, message, _ in results:
        assert "\n" not in message


def test_flake8_plugin_without_lines():
    from zklint.flake8_plugin import ZkLintChecker

    results = list(ZkLintChecker(ast.parse(BAD)).run())
    assert any(message.startswith("ZK401") for _, _, message, _ in results)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_a_dying_worker_process_does_not_hang_the_run(cli, tmp_path, monkeypatch):
    for i in range(8):
        write(tmp_path / f"m{i}.py", BAD)
    real = checking_module.run_job

    def dying(job):
        if job.path.endswith("m3.py"):
            os._exit(9)  # as if killed for memory
        return real(job)

    monkeypatch.setattr(checking_module, "run_job", dying)
    start = time.monotonic()
    result = cli("check", "--select", "ZK401", "-j", "2", ".")
    assert time.monotonic() - start < 120
    assert result.code == 2
    assert_no_traceback(result)
    lost = [line for line in result.error_lines() if "not checked: a worker process died" in line]
    assert any(line.startswith("./m3.py: ") for line in lost)
    assert len(result.findings()) + len(lost) == 8  # every file accounted for
