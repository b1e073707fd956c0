"""Proof of ZK101 ephemeral-owner-not-checked against a real ZooKeeper.

A worker registers an ephemeral node and treats NodeExistsError as "already
registered". When it crashes and is restarted before its old session expires,
the restarted worker finds the old session's node, believes it is registered,
and the node vanishes when the old session times out. After `zklint check --fix
--unsafe-fixes --select ZK101` the restarted worker sees that another session
owns the node, deletes it and creates it again: the node outlives the old
session and belongs to the new one.
"""

from __future__ import annotations

import shutil

import pytest

from kazoo.client import KazooClient

from .support import Program, ProgramRunner, assert_stays, wait_until, zklint_fix

# The code under proof, as users write it. It connects, waits for a "go" line
# on stdin (so the test can start the replacement worker ahead of time and make
# it register right after the crash, well inside the 2 s session timeout of the
# test server), registers, and lives until stdin is closed.
BAD_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient
    from kazoo.exceptions import NodeExistsError


    def main():
        path = os.environ["ZK_PATH"]
        zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
        zk.start()
        try:
            print("READY", flush=True)
            sys.stdin.readline()
            try:
                zk.create(path, b"worker", ephemeral=True, makepath=True)
            except NodeExistsError:
                print("ALREADY REGISTERED", flush=True)
            print("REGISTERED session=%d" % zk.client_id[0], flush=True)
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

# The same worker computing the path in the create call: the fix binds it to a
# local first, then checks the owner.
COMPUTED_PATH_PROGRAM = BAD_PROGRAM.replace(
    'zk.create(path, b"worker"', 'zk.create(os.environ["ZK_PATH"].rstrip("/"), b"worker"'
)
assert COMPUTED_PATH_PROGRAM != BAD_PROGRAM

START_TIMEOUT_S = 15.0
# The test server clamps sessions to at most 2 s; the old session is gone
# after that plus the server's expiry tick. Generous deadlines, polled.
EXPIRY_TIMEOUT_S = 15.0
# How long the fixed worker's node must stay after the old session is gone:
# over twice the session timeout.
STAYS_S = 5.0


def _go(program: Program) -> None:
    program.proc.stdin.write(b"go\n")
    program.proc.stdin.flush()


def _session(program: Program) -> int:
    index = program.wait_for_line("REGISTERED session=", START_TIMEOUT_S)
    return int(program.lines()[index].split("session=")[1])


def _crash_and_restart(script, hosts: str, path: str, programs: ProgramRunner):
    """Register, SIGKILL, and register again at once; returns (old, new) sessions and the new program."""
    env = {"ZK_PATH": path}
    first = programs.start(script, hosts, env=env)
    first.wait_for_line("READY", START_TIMEOUT_S)
    _go(first)
    old_session = _session(first)
    second = programs.start(script, hosts, env=env)
    second.wait_for_line("READY", START_TIMEOUT_S)
    first.sigkill()
    _go(second)
    new_session = _session(second)
    assert second.find_line("ALREADY REGISTERED") is not None, (
        "the restarted worker should find the crashed worker's node\n" + second.describe()
    )
    return old_session, new_session, second


def _owner(observer: KazooClient, path: str):
    stat = observer.exists(path)
    return None if stat is None else stat.ephemeralOwner


def test_unchecked_owner_loses_the_node(zk_server, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk101_bad.py")
    old_session, new_session, worker = _crash_and_restart(bad, zk_server.hosts, zk_path, programs)
    assert _owner(zk_observer, zk_path) == old_session
    # the old session expires and takes the node with it, while the worker runs on
    wait_until(
        lambda: zk_observer.exists(zk_path) is None,
        EXPIRY_TIMEOUT_S,
        message="the crashed session's node to vanish",
    )
    assert worker.running, worker.describe()
    assert worker.finish() == 0, worker.describe()


@pytest.mark.parametrize("program", [BAD_PROGRAM, COMPUTED_PATH_PROGRAM], ids=["name", "computed"])
def test_checked_owner_keeps_the_node(
    program, zk_server, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner
):
    bad = programs.write(program, "zk101_bad.py")
    fixed = bad.with_name("zk101_fixed.py")
    shutil.copy(bad, fixed)
    result = zklint_fix(fixed, unsafe=True, select="ZK101")
    assert result.returncode == 0, f"zklint exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "ephemeralOwner" in fixed.read_text()

    old_session, new_session, worker = _crash_and_restart(fixed, zk_server.hosts, zk_path, programs)
    assert new_session != old_session
    # the handler took the node over for the new session ...
    wait_until(lambda: _owner(zk_observer, zk_path) == new_session, START_TIMEOUT_S, message="the new owner")
    # ... so the old session's expiry does not remove it
    assert_stays(
        lambda: _owner(zk_observer, zk_path) == new_session,
        STAYS_S,
        message=lambda: "the node must stay with the new session\n" + worker.describe(),
    )
    assert worker.finish() == 0, worker.describe()
    wait_until(lambda: zk_observer.exists(zk_path) is None, EXPIRY_TIMEOUT_S, message="node gone after stop()")
