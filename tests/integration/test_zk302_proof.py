"""Proof of ZK302 deadlock-in-callback against a real ZooKeeper.

A synchronous `create()` in a state listener runs on the connection thread, the
only thread that sends requests and reads replies: the request is never sent, the
listener never returns, and even `stop()` hangs. After `zklint check --fix
--unsafe-fixes` (the call becomes `create_async()`) the node is created and the
program stops cleanly.
"""

from __future__ import annotations

import shutil

import pytest

from .support import ProgramRunner, assert_stays, wait_until, zklint_fix

# The code under proof, as users write it: (re-)register a node whenever the
# session is (re-)established. Lives until the test closes its stdin.
BAD_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient
    from kazoo.protocol.states import KazooState

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
    NODE = os.environ["ZK_PATH"]


    def on_state(state):
        print(f"STATE {state}", flush=True)
        if state == KazooState.CONNECTED:
            zk.create(NODE, b"up", makepath=True)


    def main():
        zk.add_listener(on_state)
        zk.start()
        try:
            print("STARTED", flush=True)
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()
            print("STOPPED", flush=True)


    if __name__ == "__main__":
        main()
'''

START_TIMEOUT_S = 15.0
# How long the bad program's node must stay missing: many round trips.
NO_NODE_WINDOW_S = 3.0
# How long the bad program gets to exit once asked to: stop() normally takes
# milliseconds.
STOP_TIMEOUT_S = 5.0
NODE_TIMEOUT_S = 10.0


def test_sync_call_in_listener_hangs(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk302_bad.py")
    program = programs.start(bad, zk_server.hosts, env={"ZK_PATH": zk_path})
    program.wait_for_line("STATE CONNECTED", START_TIMEOUT_S)
    program.wait_for_line("STARTED", START_TIMEOUT_S)

    assert_stays(
        lambda: zk_observer.exists(zk_path) is None,
        NO_NODE_WINDOW_S,
        message=lambda: "the listener's create() must never complete\n" + program.describe(),
    )
    with pytest.raises(AssertionError, match="did not exit"):
        program.finish(timeout=STOP_TIMEOUT_S)  # stop() hangs behind the listener
    assert "STOPPED" not in program.output(), program.describe()
    program.sigkill()


def test_sync_call_in_listener_fixed_completes(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk302_bad.py")
    fixed = bad.with_name("zk302_fixed.py")
    shutil.copy(bad, fixed)
    original = fixed.read_text()

    result = zklint_fix(fixed, unsafe=True)
    assert result.returncode == 0, (
        f"zklint exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert fixed.read_text() == original.replace("zk.create(", "zk.create_async(")

    program = programs.start(fixed, zk_server.hosts, env={"ZK_PATH": zk_path})
    program.wait_for_line("STARTED", START_TIMEOUT_S)
    wait_until(
        lambda: zk_observer.exists(zk_path) is not None,
        NODE_TIMEOUT_S,
        message=lambda: "the fixed listener's create_async() must complete\n" + program.describe(),
    )
    assert program.finish(timeout=STOP_TIMEOUT_S) == 0, program.describe()
    assert "STOPPED" in program.output(), program.describe()


# A completion callback written as a lambda whose synchronous create sits inside a
# larger expression: the create's own result is delivered by the completion thread
# the lambda is blocking, so it never returns. The fix runs the whole expression in
# client.handler.spawn(lambda: ...).
RAWLINK_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
    NODE = os.environ["ZK_PATH"]


    def main():
        zk.start()
        try:
            found = zk.exists_async("/")
            found.rawlink(lambda result: print("MARKED", zk.create(NODE, b"x", makepath=True), flush=True))
            print("STARTED", flush=True)
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''


def test_sync_create_in_rawlink_lambda_never_returns(zk_server, zk_path, programs: ProgramRunner):
    bad = programs.write(RAWLINK_PROGRAM, "zk302_rawlink_bad.py")
    program = programs.start(bad, zk_server.hosts, env={"ZK_PATH": zk_path})
    program.wait_for_line("STARTED", START_TIMEOUT_S)
    assert_stays(
        lambda: "MARKED" not in program.output(),
        NO_NODE_WINDOW_S,
        message=lambda: "the lambda's create() must never return\n" + program.describe(),
    )
    program.sigkill()


def test_sync_create_in_rawlink_lambda_fixed_returns(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(RAWLINK_PROGRAM, "zk302_rawlink_bad.py")
    fixed = bad.with_name("zk302_rawlink_fixed.py")
    shutil.copy(bad, fixed)
    original = fixed.read_text()
    result = zklint_fix(fixed, unsafe=True)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert fixed.read_text() == original.replace(
        'lambda result: print("MARKED", zk.create(NODE, b"x", makepath=True), flush=True)',
        'lambda result: zk.handler.spawn(lambda: print("MARKED", zk.create(NODE, b"x", makepath=True), flush=True))',
    )
    program = programs.start(fixed, zk_server.hosts, env={"ZK_PATH": zk_path})
    program.wait_for_line("MARKED " + zk_path, NODE_TIMEOUT_S)
    assert zk_observer.exists(zk_path) is not None
    assert program.finish(timeout=STOP_TIMEOUT_S) == 0, program.describe()
