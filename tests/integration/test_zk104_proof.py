"""Proof of ZK104 ephemeral-sequential-retried against a real ZooKeeper.

A program joins a group with `zk.retry(zk.create, path + "/member-", b"",
ephemeral=True, sequence=True)`, the shape the rule flags. Its connection goes
through a loopback proxy (`proxy.py`) that, once armed, lets the create reach
the server, swallows the server's reply and drops the connection. The server
made the node; the client sees ConnectionLoss, reconnects with the same
session, and the retry creates again: the session now owns two sequential
nodes, the one the program knows and an orphan (the one named in the lost
reply) that lives until the session ends.

The pattern the rule's docs recommend (kazoo Lock's `_find_node`: a uuid prefix
fixed once, and every attempt first looks for a child with that prefix) finds
the node of the lost reply on the retry and leaves exactly one node.
"""

from __future__ import annotations


import pytest
from kazoo.client import KazooClient

from .proxy import LostReplyProxy
from .support import Program, ProgramRunner, wait_until, zklint_check

# The flagged code (the rule's `example` shape). The program connects through
# the proxy, creates the parent, says READY, and waits for a line on stdin
# before the create, so the test can arm the proxy first. It lives until stdin
# is closed.
BAD_PROGRAM = '''
    import os
    import sys
    import threading

    from kazoo.client import KazooClient


    output = threading.Lock()  # whole lines: report() runs on kazoo's connection thread


    def say(line):
        with output:
            print(line, flush=True)


    def report(state):
        say("STATE %s" % state)


    def main():
        path = os.environ["ZK_PATH"]
        zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
        zk.add_listener(report)
        zk.start()
        try:
            zk.ensure_path(path)
            say("READY session=%d" % zk.client_id[0])
            sys.stdin.readline()
            node = zk.retry(zk.create, path + "/member-", b"", ephemeral=True, sequence=True)
            say("CREATED %s session=%d" % (node, zk.client_id[0]))
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

# The recommended code, written by hand after the rule's `use_instead`.
GOOD_PROGRAM = '''
    import os
    import sys
    import threading
    import uuid

    from kazoo.client import KazooClient


    output = threading.Lock()  # whole lines: report() runs on kazoo's connection thread


    def say(line):
        with output:
            print(line, flush=True)


    def report(state):
        say("STATE %s" % state)


    def main():
        path = os.environ["ZK_PATH"]
        zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
        zk.add_listener(report)
        zk.start()
        prefix = uuid.uuid4().hex + "__member-"  # fixed once, reused by every attempt
        attempts = []

        def create_once():
            attempts.append(1)
            # a retry first looks for the node an earlier attempt may have created
            for child in zk.get_children(path):
                if child.startswith(prefix):
                    return path + "/" + child
            return zk.create(path + "/" + prefix, b"", ephemeral=True, sequence=True)

        try:
            zk.ensure_path(path)
            say("READY session=%d" % zk.client_id[0])
            sys.stdin.readline()
            node = zk.retry(create_once)
            say("ATTEMPTS %d" % len(attempts))
            say("CREATED %s session=%d" % (node, zk.client_id[0]))
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

START_TIMEOUT_S = 15.0
# The lost reply comes back from the server within milliseconds of the create;
# kazoo reconnects (connection retry delay 0.1 s + jitter) and the command
# retry sends the create again, all well within the 2 s session.
LOST_TIMEOUT_S = 10.0
CREATED_TIMEOUT_S = 15.0
# The parent's children once the program's stop() ended its session.
CLEANUP_TIMEOUT_S = 10.0
PROXY_LIFETIME_S = 40.0


@pytest.fixture
def proxy(zk_server):
    with LostReplyProxy(zk_server.port, lifetime=PROXY_LIFETIME_S) as proxy:
        yield proxy


def _field(program: Program, prefix: str, name: str, timeout: float) -> str:
    index = program.wait_for_line(prefix, timeout)
    return program.lines()[index].split(name + "=")[1].split()[0]


def _run_scenario(program: Program, proxy: LostReplyProxy, observer: KazooClient, zk_path: str):
    """Arm the proxy and let the program create; returns (session, node the
    program got, the lost reply, the parent's children, their owners)."""
    session = int(_field(program, "READY", "session", START_TIMEOUT_S))
    assert proxy.accepted == 1, "the program connected through the proxy"
    proxy.arm()
    program.proc.stdin.write(b"go\n")
    program.proc.stdin.flush()

    assert proxy.lost.wait(LOST_TIMEOUT_S), "the proxy never saw the create\n" + program.describe()
    lost = proxy.lost_reply
    # The server did the create: its reply (lost on the way back) names the node.
    assert lost.err == 0 and lost.path and lost.path.startswith(zk_path + "/"), lost

    index = program.wait_for_line("CREATED", CREATED_TIMEOUT_S)
    created = program.lines()[index].split()
    node, after = created[1], int(created[2].split("=")[1])
    # kazoo reconnected through the proxy and kept its session: no expiry involved.
    assert proxy.accepted >= 2, proxy.accepted
    assert after == session, program.describe()
    assert program.find_line("STATE SUSPENDED") is not None, program.describe()
    assert program.find_line("STATE LOST") is None, program.describe()

    children = sorted(observer.get_children(zk_path))
    owners = {c: observer.exists(f"{zk_path}/{c}").ephemeralOwner for c in children}
    return session, node, lost, children, owners


def _finish(program: Program, observer: KazooClient, zk_path: str) -> None:
    assert program.finish() == 0, program.describe()
    # stop() closed the session: the server removes every node it owned, orphan included.
    wait_until(
        lambda: observer.get_children(zk_path) == [],
        CLEANUP_TIMEOUT_S,
        message="the session's nodes to go after stop()",
    )


def test_retried_sequential_create_leaves_orphan(
    zk_server, proxy: LostReplyProxy, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner
):
    bad = programs.write(BAD_PROGRAM, "zk104_bad.py")
    lint = zklint_check(bad, "ZK104")
    assert lint.returncode == 1 and "ZK104" in lint.stdout, f"{lint.returncode}\n{lint.stdout}\n{lint.stderr}"

    program = programs.start(bad, proxy.hosts, env={"ZK_PATH": zk_path})
    session, node, lost, children, owners = _run_scenario(program, proxy, zk_observer, zk_path)

    # Two sequential nodes, both owned by the program's one session ...
    assert len(children) == 2, (children, program.describe())
    assert set(owners.values()) == {session}, owners
    # ... the one the program got back from the retry, and the orphan: the one
    # the server made for the first create, whose reply was lost.
    assert node != lost.path, (node, lost)
    assert {f"{zk_path}/{c}" for c in children} == {node, lost.path}
    assert children[0] == lost.path.rsplit("/", 1)[1], "the orphan is the first create's node"

    _finish(program, zk_observer, zk_path)


def test_uuid_prefix_create_leaves_one_node(
    zk_server, proxy: LostReplyProxy, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner
):
    good = programs.write(GOOD_PROGRAM, "zk104_good.py")
    lint = zklint_check(good, "ZK104")
    assert lint.returncode == 0 and "ZK104" not in lint.stdout, f"{lint.returncode}\n{lint.stdout}\n{lint.stderr}"

    program = programs.start(good, proxy.hosts, env={"ZK_PATH": zk_path})
    session, node, lost, children, owners = _run_scenario(program, proxy, zk_observer, zk_path)

    # The same lost reply and retry happened ...
    attempts = int(program.lines()[program.wait_for_line("ATTEMPTS", 1.0)].split()[1])
    assert attempts >= 2, program.describe()
    # ... and the retry found the node of the lost reply instead of making another.
    assert children == [lost.path.rsplit("/", 1)[1]], (children, lost, program.describe())
    assert node == lost.path
    assert owners == {children[0]: session}

    _finish(program, zk_observer, zk_path)
