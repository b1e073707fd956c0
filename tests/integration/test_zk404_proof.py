"""Proof of ZK404 threading-handler-under-gevent against a real ZooKeeper.

kazoo's documentation forbids the default SequentialThreadingHandler in programs
that monkey-patch with gevent (and eventlet); users report hangs and lost
connections. The failure itself did NOT reproduce here: with gevent 26.9 /
eventlet 0.41, kazoo 2.11 and ZooKeeper 3.8 on an idle loopback server, the
flagged program connected, watched and stopped like the fixed one (also with a
greenlet busy for longer than the session timeout, which starves both handlers
alike). So this proof shows the other half: `zklint check --fix` turns each
flagged program into one that uses the runtime's own handler, and that program,
run under the patched runtime, connects, registers an ephemeral node, sees a
change through a DataWatch, and stops cleanly (its node gone at once).

Needs gevent and eventlet (the `test` extra); skipped without them.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from .support import ProgramRunner, wait_until, zklint_check, zklint_fix

# The flagged program, parametrised by the patching lines. It registers, says
# READY, waits (cooperatively: an Event, patched) for the test to change the node,
# then stops and closes its client.
PROGRAM = '''
    {patch}

    import os
    import threading

    from kazoo.client import KazooClient


    def main():
        path = os.environ["ZK_PATH"]
        zk = KazooClient(hosts=os.environ["ZK_HOSTS"], timeout=4.0)
        zk.start(timeout=10)
        print("HANDLER", type(zk.handler).__name__, flush=True)
        changed = threading.Event()
        try:
            zk.create(path + "/member", b"", ephemeral=True, makepath=True)

            @zk.DataWatch(path)
            def watch(data, stat):
                print("DATA", data, flush=True)
                if data == b"v1":
                    changed.set()

            print("READY", flush=True)
            print("WATCHED", changed.wait(10), flush=True)
        finally:
            zk.stop()
            zk.close()
        print("STOPPED", flush=True)


    if __name__ == "__main__":
        main()
'''

RUNTIMES = {
    # runtime: (patching lines, the fixed client line, the import the fix adds)
    "gevent": (
        "from gevent import monkey\n\n    monkey.patch_all()",
        "SequentialGeventHandler",
        "from kazoo.handlers.gevent import SequentialGeventHandler",
    ),
    "eventlet": (
        "import eventlet\n\n    eventlet.monkey_patch()",
        "SequentialEventletHandler",
        "from kazoo.handlers.eventlet import SequentialEventletHandler",
    ),
}

START_TIMEOUT_S = 15.0
WATCH_TIMEOUT_S = 10.0
GONE_AT_ONCE_S = 0.5


def _expected(runtime: str) -> str:
    patch, handler, line = RUNTIMES[runtime]
    return (
        PROGRAM.format(patch=patch)
        .replace("from kazoo.client import KazooClient\n", f"from kazoo.client import KazooClient\n    {line}\n")
        .replace("timeout=4.0)", f"timeout=4.0, handler={handler}())")
    )


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_fixed_program_runs_under_the_patched_runtime(
    runtime, zk_server, zk_observer, zk_path, programs: ProgramRunner
):
    if importlib.util.find_spec(runtime) is None:
        pytest.skip(f"{runtime} is not installed (pip install -e .[test])")
    bad = programs.write(PROGRAM.format(patch=RUNTIMES[runtime][0]), f"zk404_{runtime}_bad.py")
    lint = zklint_check(bad, "ZK404")
    assert lint.returncode == 1 and "ZK404" in lint.stdout, f"{lint.stdout}\n{lint.stderr}"

    fixed = bad.with_name(f"zk404_{runtime}_fixed.py")
    shutil.copy(bad, fixed)
    result = zklint_fix(fixed, select="ZK404")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert fixed.read_text() == programs.write(_expected(runtime), "expected.py").read_text()

    node = zk_path + "/member"
    program = programs.start(fixed, zk_server.hosts, env={"ZK_PATH": zk_path})
    program.wait_for_line("READY", START_TIMEOUT_S)
    assert program.find_line("HANDLER " + RUNTIMES[runtime][1]) is not None, program.describe()
    assert zk_observer.exists(node), program.describe()
    zk_observer.set(zk_path, b"v1")
    program.wait_for_line("WATCHED True", WATCH_TIMEOUT_S)
    assert program.finish() == 0, program.describe()
    assert program.find_line("STOPPED") is not None, program.describe()
    assert "Traceback" not in program.errors(), program.describe()
    wait_until(
        lambda: not zk_observer.exists(node),
        GONE_AT_ONCE_S,
        message=lambda: "the stopped session's node to be gone\n" + program.describe(),
    )
