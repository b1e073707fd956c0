"""Helpers for the real-ZooKeeper scenario tests.

A scenario runs a small Python program (the code under proof, as users write it)
in a subprocess against a real server, acts on the process or the server (signals,
outages) and observes the result through the program's output and an observer
client. Everything here waits by polling with a deadline, never by fixed sleeps.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Optional, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")

# `setpriv --pdeathsig KILL` (util-linux) makes the kernel kill a child when the
# pytest process dies, so even a SIGKILLed test run leaves no server or program
# behind. It sets the flag and execs the command, so the child keeps its pid.
_SETPRIV = shutil.which("setpriv")


def spawn(cmd: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start `cmd` in its own session (so its process group can be signalled
    without touching pytest), killed by the kernel if pytest dies first."""
    if _SETPRIV:
        cmd = [_SETPRIV, "--pdeathsig", "KILL", "--", *cmd]
    return subprocess.Popen(cmd, start_new_session=True, **popen_kwargs)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the process group of `proc` (a no-op once it is reaped)."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def kill_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL the whole process group of `proc` and reap it."""
    signal_group(proc, signal.SIGKILL)
    proc.wait(timeout=timeout)


def wait_until(
    fn: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "",
) -> T:
    """Call `fn` until it returns a truthy value and return that value.

    Raises AssertionError after `timeout` seconds; `message` (or its result when
    callable, to include fresh diagnostics) explains what was awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(
                f"timed out after {timeout:.1f}s waiting for {text or fn!r}"
            )
        time.sleep(interval)


def assert_stays(
    fn: Callable[[], object],
    duration: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "",
) -> None:
    """Assert that `fn` returns a truthy value on every poll for `duration`
    seconds: the negative half of a proof ("it never reconnects")."""
    deadline = time.monotonic() + duration
    while True:
        if not fn():
            text = message() if callable(message) else message
            raise AssertionError(
                f"condition broke before {duration:.1f}s elapsed: {text or fn!r}"
            )
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def _python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child Pythons: unbuffered output (tests read it while
    the program runs) and this checkout first on the import path, so
    `-m zklint` runs the working tree's code."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    if extra:
        env.update(extra)
    return env


def run_zklint(args, path: Path, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run `python -m zklint check ARGS path` in the file's directory (so no project
    configuration of this repository applies to it), with this checkout importable."""
    return subprocess.run(
        [sys.executable, "-m", "zklint", "check", *args, str(path)],
        cwd=Path(path).parent,
        env=_python_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def zklint_fix(
    path: Path, unsafe: bool = False, timeout: float = 120.0, select: Optional[str] = None
) -> subprocess.CompletedProcess:
    """Run `python -m zklint check --fix [--unsafe-fixes] [--select CODES] path`.

    The CLI rewrites the file in place and exits 0 when it is clean after
    fixing, 1 when findings remain, 2 on error.
    """
    args = ["--fix"] + (["--unsafe-fixes"] if unsafe else []) + (["--select", select] if select else [])
    return run_zklint(args, path, timeout)


def zklint_check(path: Path, select: str) -> subprocess.CompletedProcess:
    """Run `python -m zklint check --select CODES --output-format concise path`."""
    return run_zklint(["--select", select, "--output-format", "concise"], path)


class Program:
    """A scenario program running in a subprocess.

    stdout and stderr go to files (read at any time, also after a SIGKILL);
    stdin is a pipe. Convention for programs that must live until the test is
    done with them: block on `sys.stdin.read()` and clean up afterwards;
    `finish()` closes stdin to let them proceed.
    """

    def __init__(
        self, script: Path, proc: subprocess.Popen, stdout: Path, stderr: Path
    ):
        self.script = script
        self.proc = proc
        self.stdout_path = stdout
        self.stderr_path = stderr

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        return self.output().splitlines()

    def mark(self) -> int:
        """Number of stdout lines so far: pass as `after=` to look only at
        what the program printed from now on."""
        return len(self.lines())

    def find_line(self, text: str, after: int = 0) -> int | None:
        """Index of the first stdout line at or after `after` containing `text`."""
        for index, line in enumerate(self.lines()[after:], start=after):
            if text in line:
                return index
        return None

    def wait_for_line(self, text: str, timeout: float, after: int = 0) -> int:
        """Wait until a stdout line at or after `after` contains `text`;
        return its index. Fails early, with the output, if the program exits."""

        def seen() -> bool:
            if self.find_line(text, after) is not None:
                return True
            # Read again after seeing the exit: the line may have been written
            # just before it.
            if not self.running and self.find_line(text, after) is None:
                raise AssertionError(
                    f"{self.script.name} exited ({self.proc.returncode}) without "
                    f"printing {text!r}\n{self.describe()}"
                )
            return False

        wait_until(
            seen,
            timeout,
            message=lambda: f"{text!r} from {self.script.name}\n{self.describe()}",
        )
        return self.find_line(text, after)

    def sigstop(self) -> None:
        signal_group(self.proc, signal.SIGSTOP)

    def sigcont(self) -> None:
        signal_group(self.proc, signal.SIGCONT)

    def sigkill(self) -> None:
        """Crash the program (no cleanup runs) and reap it."""
        kill_group(self.proc)

    def finish(self, timeout: float = 15.0) -> int:
        """Close stdin, wait for a clean exit, return the exit code."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.script.name} did not exit within {timeout}s after stdin "
                f"was closed\n{self.describe()}"
            ) from None

    def describe(self) -> str:
        return (
            f"--- {self.script.name} (pid {self.pid}) stdout ---\n{self.output()}"
            f"--- stderr ---\n{self.errors()}--- end ---"
        )


class ProgramRunner:
    """Writes scenario programs into a test's temp dir and runs them; the
    `programs` fixture kills whatever is still running at teardown."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.started: list[Program] = []

    def write(self, source: str, name: str = "program.py") -> Path:
        """Write `source` (dedented) to `name` in the temp dir."""
        path = self.directory / name
        path.write_text(textwrap.dedent(source).lstrip("\n"))
        return path

    def _command(self, script: Path, args: Iterable[str]) -> list[str]:
        return [sys.executable, str(script), *args]

    def start(
        self,
        script: Path,
        hosts: str,
        args: Iterable[str] = (),
        env: dict[str, str] | None = None,
    ) -> Program:
        """Start `script` with ZK_HOSTS=`hosts` (plus `env`), without waiting."""
        # Each run gets its own output files, so a program restarted by the
        # test (e.g. after SIGKILL) does not overwrite the first run's output.
        run = sum(1 for p in self.started if p.script == script) + 1
        stdout = self.directory / f"{script.stem}.{run}.stdout"
        stderr = self.directory / f"{script.stem}.{run}.stderr"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = spawn(
                self._command(script, args),
                cwd=script.parent,
                env=_python_env({"ZK_HOSTS": hosts, **(env or {})}),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
            )
        program = Program(script, proc, stdout, stderr)
        self.started.append(program)
        return program

    def run(
        self,
        script: Path,
        hosts: str,
        args: Iterable[str] = (),
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess:
        """Run `script` to completion with ZK_HOSTS=`hosts`; stdin is empty."""
        return subprocess.run(
            self._command(script, args),
            cwd=script.parent,
            env=_python_env({"ZK_HOSTS": hosts, **(env or {})}),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cleanup(self) -> None:
        """Kill every program still running and print all outputs (pytest
        shows them for failing tests only)."""
        for program in self.started:
            if program.running:
                kill_group(program.proc)
            if program.proc.stdin:
                program.proc.stdin.close()
            print(program.describe())
