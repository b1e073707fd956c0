"""Proof of ZK102 ephemeral-lost-with-session against a real ZooKeeper.

A worker registers an ephemeral node once. When its session expires (here: the
process is frozen with SIGSTOP past the session timeout, as a long GC pause or
a VM stall would), the server deletes the node; on SIGCONT kazoo reconnects by
itself with a new session, but nothing creates the node again. After `zklint
check --fix --unsafe-fixes --select ZK102` a state listener re-creates it (off
the connection thread) once the client is CONNECTED again.
"""

from __future__ import annotations

import shutil

import pytest

from kazoo.client import KazooClient

from .support import Program, ProgramRunner, assert_stays, wait_until, zklint_fix

# The code under proof, as users write it: a logging-only listener (it does not
# react to LOST) and one registration. It lives until stdin is closed.
BAD_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient


    def report(state):
        print("STATE", state, flush=True)


    def main():
        path = os.environ["ZK_PATH"]
        zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
        zk.add_listener(report)
        zk.start()
        try:
            zk.create(path, b"worker", ephemeral=True, makepath=True)
            print("REGISTERED session=%d" % zk.client_id[0], flush=True)
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

# The path computed in the call: the fix binds it to a name first.
COMPUTED_PATH_PROGRAM = BAD_PROGRAM.replace(
    'zk.create(path, b"worker"', 'zk.create(os.environ["ZK_PATH"].rstrip("/"), b"worker"'
)
assert COMPUTED_PATH_PROGRAM != BAD_PROGRAM

# A group member: an ephemeral sequential node whose generated name is not kept.
MEMBER_PROGRAM = BAD_PROGRAM.replace(
    'zk.create(path, b"worker", ephemeral=True, makepath=True)',
    'zk.create(path + "/member-", b"worker", ephemeral=True, sequence=True, makepath=True)',
)
assert MEMBER_PROGRAM != BAD_PROGRAM

START_TIMEOUT_S = 15.0
# The test server's sessions last at most 2 s: the frozen worker's session
# expires (and its node is deleted) within a few seconds.
EXPIRY_TIMEOUT_S = 15.0
# After SIGCONT kazoo sees the expiry, reports LOST and connects with a new
# session; its connect timeout with a 2 s session is short.
RECONNECT_TIMEOUT_S = 25.0
# How long the bad worker's node must stay missing after it reconnected.
STAYS_S = 3.0


def _expire_session(program: Program, observer: KazooClient, path: str) -> int:
    """Freeze the program until its session is gone, then thaw it; returns the output mark."""
    program.sigstop()
    try:
        wait_until(lambda: observer.exists(path) is None, EXPIRY_TIMEOUT_S, message="the expired session's node to go")
    finally:
        mark = program.mark()
        program.sigcont()
    return mark


def _owner(observer: KazooClient, path: str):
    stat = observer.exists(path)
    return None if stat is None else stat.ephemeralOwner


def _session(program: Program) -> int:
    index = program.wait_for_line("REGISTERED session=", START_TIMEOUT_S)
    return int(program.lines()[index].split("session=")[1])


def test_node_stays_lost_after_expiry(zk_server, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk102_bad.py")
    worker = programs.start(bad, zk_server.hosts, env={"ZK_PATH": zk_path})
    session = _session(worker)
    assert _owner(zk_observer, zk_path) == session

    thawed = _expire_session(worker, zk_observer, zk_path)
    worker.wait_for_line("STATE LOST", RECONNECT_TIMEOUT_S, after=thawed)
    worker.wait_for_line("STATE CONNECTED", RECONNECT_TIMEOUT_S, after=thawed)
    assert_stays(
        lambda: zk_observer.exists(zk_path) is None,
        STAYS_S,
        message=lambda: "nothing re-creates the node in the bad program\n" + worker.describe(),
    )
    assert worker.finish() == 0, worker.describe()


@pytest.mark.parametrize("program", [BAD_PROGRAM, COMPUTED_PATH_PROGRAM], ids=["name", "computed"])
def test_listener_recreates_node(program, zk_server, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner):
    bad = programs.write(program, "zk102_bad.py")
    fixed = bad.with_name("zk102_fixed.py")
    shutil.copy(bad, fixed)
    result = zklint_fix(fixed, unsafe=True, select="ZK102")
    assert result.returncode == 0, f"zklint exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "add_listener(recreate_node)" in fixed.read_text()

    worker = programs.start(fixed, zk_server.hosts, env={"ZK_PATH": zk_path})
    session = _session(worker)
    assert _owner(zk_observer, zk_path) == session

    thawed = _expire_session(worker, zk_observer, zk_path)
    worker.wait_for_line("STATE LOST", RECONNECT_TIMEOUT_S, after=thawed)
    worker.wait_for_line("STATE CONNECTED", RECONNECT_TIMEOUT_S, after=thawed)
    owner = wait_until(lambda: _owner(zk_observer, zk_path), RECONNECT_TIMEOUT_S, message="the node to come back")
    assert owner != session, "re-created by the new session"
    assert worker.finish() == 0, worker.describe()
    wait_until(lambda: zk_observer.exists(zk_path) is None, EXPIRY_TIMEOUT_S, message="node gone after stop()")


def _members(observer: KazooClient, path: str):
    return observer.get_children(path) if observer.exists(path) else []


def test_listener_recreates_group_member(zk_server, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner):
    bad = programs.write(MEMBER_PROGRAM, "zk102_member_bad.py")
    fixed = bad.with_name("zk102_member_fixed.py")
    shutil.copy(bad, fixed)
    result = zklint_fix(fixed, unsafe=True, select="ZK102")
    assert result.returncode == 0, f"zklint exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "add_listener(recreate_node)" in fixed.read_text()

    worker = programs.start(fixed, zk_server.hosts, env={"ZK_PATH": zk_path})
    _session(worker)
    [first] = _members(zk_observer, zk_path)

    worker.sigstop()
    try:
        wait_until(lambda: not _members(zk_observer, zk_path), EXPIRY_TIMEOUT_S, message="the member to go")
    finally:
        thawed = worker.mark()
        worker.sigcont()
    worker.wait_for_line("STATE CONNECTED", RECONNECT_TIMEOUT_S, after=thawed)
    members = wait_until(lambda: _members(zk_observer, zk_path), RECONNECT_TIMEOUT_S, message="a member again")
    assert len(members) == 1 and members != [first], members  # one member, under a new number
    assert worker.finish() == 0, worker.describe()
