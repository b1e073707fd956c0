"""Proof of ZK502 transaction-commit-retried against a real ZooKeeper.

A program builds a transaction (two creates) and commits it with
`zk.retry(t.commit)`, the shape the rule flags. Its connection goes through the
loopback proxy of `proxy.py`, armed to let the transaction (a ZooKeeper `multi`
request) reach the server, swallow the reply and drop the connection. The server
ran the transaction; the client sees ConnectionLoss, and the retry calls
commit() again on the same object: kazoo raises
ValueError('Transaction already committed') and the program dies, not knowing
that both nodes were made.

`zklint check --fix --unsafe-fixes --select ZK502` moves the building of the
transaction into the retried function: the retry sends a fresh transaction, the
server answers that the first node already exists (nothing applied twice), and
the program finishes with a result it can read: here, that an earlier attempt
was applied.
"""

from __future__ import annotations

import shutil

import pytest
from kazoo.client import KazooClient

from .proxy import LostReplyProxy
from .support import Program, ProgramRunner, zklint_check, zklint_fix

OP_MULTI = 14

# The program connects through the proxy, says READY and waits for a line on
# stdin before the commit, so the test can arm the proxy first.
BAD_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient


    def main():
        path = os.environ["ZK_PATH"]
        zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
        zk.start()
        try:
            zk.ensure_path(path)
            print("READY", flush=True)
            sys.stdin.readline()
            t = zk.transaction()
            t.create(path + "/a", b"1")
            t.create(path + "/b", b"2")
            results = zk.retry(t.commit)
            print("RESULTS", [type(r).__name__ for r in results], flush=True)
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

FIXED_PROGRAM = BAD_PROGRAM.replace(
    '''            t = zk.transaction()
            t.create(path + "/a", b"1")
            t.create(path + "/b", b"2")
            results = zk.retry(t.commit)
''',
    '''            def commit_transaction():
                t = zk.transaction()
                t.create(path + "/a", b"1")
                t.create(path + "/b", b"2")
                return t.commit()

            results = zk.retry(commit_transaction)
''',
)

START_TIMEOUT_S = 15.0
LOST_TIMEOUT_S = 10.0
EXIT_TIMEOUT_S = 15.0
PROXY_LIFETIME_S = 40.0


@pytest.fixture
def proxy(zk_server):
    with LostReplyProxy(zk_server.port, lifetime=PROXY_LIFETIME_S) as proxy:
        yield proxy


def _commit_through_lost_reply(program: Program, proxy: LostReplyProxy) -> int:
    """Arm the proxy for the transaction, let the program commit, return its exit code."""
    program.wait_for_line("READY", START_TIMEOUT_S)
    assert proxy.accepted == 1, "the program connected through the proxy"
    proxy.arm(frozenset({OP_MULTI}))
    program.proc.stdin.write(b"go\n")
    program.proc.stdin.flush()
    assert proxy.lost.wait(LOST_TIMEOUT_S), "the proxy never saw the transaction\n" + program.describe()
    assert proxy.lost_reply.err == 0, proxy.lost_reply  # the server ran the transaction
    return program.finish(EXIT_TIMEOUT_S)


def _children(observer: KazooClient, path: str) -> dict:
    return {c: observer.get(f"{path}/{c}")[0] for c in sorted(observer.get_children(path))}


def test_retried_commit_dies_with_value_error(
    zk_server, proxy: LostReplyProxy, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner
):
    bad = programs.write(BAD_PROGRAM, "zk502_bad.py")
    lint = zklint_check(bad, "ZK502")
    assert lint.returncode == 1 and "ZK502" in lint.stdout, f"{lint.stdout}\n{lint.stderr}"

    program = programs.start(bad, proxy.hosts, env={"ZK_PATH": zk_path})
    code = _commit_through_lost_reply(program, proxy)

    assert code == 1, program.describe()
    assert "ValueError: Transaction already committed" in program.errors(), program.describe()
    assert program.find_line("RESULTS") is None, program.describe()
    # (The second commit() raises before anything is sent: kazoo checks the flag first,
    # so the retry fails whether or not the client has reconnected yet.)
    # The first attempt was applied: the program died without knowing it.
    assert _children(zk_observer, zk_path) == {"a": b"1", "b": b"2"}


def test_transaction_built_in_retried_function_finishes(
    zk_server, proxy: LostReplyProxy, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner
):
    bad = programs.write(BAD_PROGRAM, "zk502_bad.py")
    fixed = bad.with_name("zk502_fixed.py")
    shutil.copy(bad, fixed)
    result = zklint_fix(fixed, unsafe=True, select="ZK502")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert fixed.read_text() == programs.write(FIXED_PROGRAM, "expected.py").read_text()

    program = programs.start(fixed, proxy.hosts, env={"ZK_PATH": zk_path})
    code = _commit_through_lost_reply(program, proxy)

    assert code == 0, program.describe()
    assert "ValueError" not in program.errors(), program.describe()
    # The retry sent a fresh transaction; the server refused it because the first one
    # had been applied: a known outcome, with each node made once.
    line = program.lines()[program.wait_for_line("RESULTS", 1.0)]
    assert "NodeExistsError" in line, program.describe()
    assert _children(zk_observer, zk_path) == {"a": b"1", "b": b"2"}
