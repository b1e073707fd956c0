"""Sweeps: zero tracebacks over the whole standard library and over kazoo's own source.

The trees are copied first. Every copied stdlib file gets a trailing ``# kazoo`` comment,
or the pre-filter (no "azoo", no parse) would skip nearly all of them; a comment
changes nothing else. Check mode and ``--fix --unsafe-fixes --diff`` must write nothing;
``--fix --unsafe-fixes`` on kazoo's source must leave every file parseable.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import sysconfig
import time
from pathlib import Path
from typing import Dict

import pytest

from tests.cli_support import assert_no_traceback, run_zklint

pytestmark = pytest.mark.slow

MARKER = b"# kazoo\n"
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "idlelib", "turtledemo"}

# The errors a sweep may report: files the standard library ships broken on purpose.
EXPECTED_ERRORS = ("syntax error", "cannot decode", "unknown encoding", "encoding problem", "NUL bytes")


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _kazoo() -> Path:
    kazoo = pytest.importorskip("kazoo")
    return Path(kazoo.__file__).parent


def _digest(root: Path) -> Dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def sweep_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    stdlib = _stdlib()
    count = 0
    for directory, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            if not name.endswith(".py"):
                continue
            source = Path(directory, name)
            target = root / "stdlib" / source.relative_to(stdlib)
            target.parent.mkdir(parents=True, exist_ok=True)
            data = source.read_bytes()
            target.write_bytes(data + (b"" if data.endswith((b"\n", b"\r")) or not data else b"\n") + MARKER)
            count += 1
    assert count > 1000
    shutil.copytree(_kazoo(), root / "kazoo", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _assert_clean_run(result) -> None:
    assert_no_traceback(result)
    assert result.code in (0, 1, 2), result.err[-2000:]
    for line in result.err.splitlines():
        if ": error: " in line:
            assert any(kind in line for kind in EXPECTED_ERRORS), line
        else:
            assert "error" not in line.lower() or line.startswith(("Would fix", "Found")), line


def test_check_sweep_writes_nothing(sweep_tree):
    before = _digest(sweep_tree)
    start = time.monotonic()
    result = run_zklint(["check", "-q", "."], cwd=sweep_tree, timeout=600)
    elapsed = time.monotonic() - start
    _assert_clean_run(result)
    assert _digest(sweep_tree) == before
    print(f"check sweep: {elapsed:.1f}s")


def test_diff_sweep_with_unsafe_fixes_writes_nothing(sweep_tree):
    before = _digest(sweep_tree)
    start = time.monotonic()
    result = run_zklint(["check", "--fix", "--unsafe-fixes", "--diff", "."], cwd=sweep_tree, timeout=600)
    elapsed = time.monotonic() - start
    _assert_clean_run(result)
    assert _digest(sweep_tree) == before
    assert not list(sweep_tree.rglob(".zklint-*"))
    print(f"diff sweep: {elapsed:.1f}s")


def test_fix_sweep_over_kazoo_leaves_parseable_files(tmp_path):
    tree = tmp_path / "kazoo"
    shutil.copytree(_kazoo(), tree, ignore=shutil.ignore_patterns("__pycache__"))
    before = _digest(tree)
    result = run_zklint(["check", "--fix", "--unsafe-fixes", "."], cwd=tmp_path, timeout=600)
    _assert_clean_run(result)
    after = _digest(tree)
    assert set(after) == set(before)  # no file lost, no temp file left
    for name, digest in after.items():
        if digest != before[name] and name.endswith(".py"):
            ast.parse((tree / name).read_bytes())
    again = run_zklint(["check", "--fix", "--unsafe-fixes", "."], cwd=tmp_path, timeout=600)
    _assert_clean_run(again)
    assert _digest(tree) == after  # a second run has nothing left to fix
