"""Helpers shared by the CLI, end-to-end, robustness and sweep tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set, Tuple

import pytest

from zklint.cli import main

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# ``path:line:col: CODE message``, whatever else the output format prints around it.
FINDING = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<code>[A-Z]+\d+)\b", re.MULTILINE)

# One ZK401 (line 4) and nothing else; the fix makes it max_tries=-1.
BAD = (
    "from kazoo.client import KazooClient\n"
    "from kazoo.retry import KazooRetry\n"
    "\n"
    'zk = KazooClient(hosts="h", connection_retry=KazooRetry(max_tries=3))\n'
)
BAD_FIXED = BAD.replace("max_tries=3", "max_tries=-1")
GOOD = BAD_FIXED


@dataclass
class Result:
    code: int
    out: str
    err: str

    def findings(self, stream: Optional[str] = None) -> Set[Tuple[str, int, int, str]]:
        text = self.out if stream is None else stream
        return {
            (os.path.basename(m.group("path")), int(m.group("line")), int(m.group("col")), m.group("code"))
            for m in FINDING.finditer(text)
        }

    def codes(self) -> Set[str]:
        return {code for _, _, _, code in self.findings()}

    def error_lines(self) -> List[str]:
        return [line for line in self.err.splitlines() if ": error: " in line]


def run_main(args: Sequence[str], capsys, cwd: Optional[Path] = None, monkeypatch=None) -> Result:
    """Run ``zklint`` in-process (fast); `cwd` needs `monkeypatch`."""
    if cwd is not None:
        monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse: --version, usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def zklint_command() -> List[str]:
    """The installed console script when there is one, else ``python -m zklint``."""
    script = shutil.which("zklint")
    return [script] if script else [sys.executable, "-m", "zklint"]


def clean_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def run(
    command: Sequence[str], cwd: Path, input: Optional[bytes] = None, timeout: float = 120, env: Optional[dict] = None
) -> Result:
    proc = subprocess.run(
        list(command), cwd=str(cwd), input=input, capture_output=True, timeout=timeout, env=env or clean_env()
    )
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def run_zklint(args: Sequence[str], cwd: Path, input: Optional[bytes] = None, timeout: float = 120) -> Result:
    return run(zklint_command() + list(args), cwd, input=input, timeout=timeout)


def assert_no_traceback(result: Result) -> None:
    for text in (result.out, result.err):
        assert "Traceback" not in text, text[-3000:]
        assert "internal error" not in text, text[-3000:]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))  # as written: no newline translation (Python 3.9 has no newline=)
    return path


def snapshot(root: Path) -> dict:
    """Every file's bytes under `root` (to prove nothing was written)."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def zk401_bad_fixtures() -> List[Path]:
    return sorted(p for p in (FIXTURES / "ZK401").glob("bad_*.py") if not p.name.endswith(".fixed.py"))


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def requires(tool: str):
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed")


def paths(items: Iterable[Path]) -> List[str]:
    return [str(p) for p in items]
