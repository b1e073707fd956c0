"""Proof of ZK401 finite-connection-retry against a real ZooKeeper.

A client whose `connection_retry` can give up goes to LOST during an outage that
outlasts the policy and never reconnects, even once the server is back. After
`zklint check --fix` (max_tries=-1) the same program rides out the same outage.
"""

from __future__ import annotations

import shutil
import time

from .support import Program, ProgramRunner, assert_stays, zklint_fix
from .zkserver import ZooKeeperServer

# The code under proof, as users write it. It reports each state change and
# lives until the test closes its stdin.
#
# Timing: max_tries=3 with the default delay=0.1, backoff=2, max_jitter=0.4
# makes 3 connection attempts with 2 sleeps of at most 0.14 s and 0.39 s, and
# a refused loopback connect fails at once: the policy gives up about 0.6 s
# after the server dies. `max_delay=0.5` changes nothing for the bad policy
# but caps the back-off of the fixed one (the fix keeps it) at 0.7 s with
# jitter, so the fixed client retries often and reconnects soon after the
# server is back, whatever the outage length.
BAD_PROGRAM = """
    import os
    import sys

    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry


    def report(state):
        print("STATE", state, flush=True)


    def main():
        zk = KazooClient(
            hosts=os.environ["ZK_HOSTS"],
            connection_retry=KazooRetry(max_tries=3, max_delay=0.5),
        )
        zk.add_listener(report)
        zk.start()
        try:
            sys.stdin.read()
        finally:
            print("FINAL connected=%s" % zk.connected, flush=True)
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
"""

# Server down time: over twice what the bad policy survives (see above). The
# real outage is longer by the server's restart time.
OUTAGE_S = 1.5
# How long to watch the bad client not reconnect after the server is back:
# several times the fixed client's worst-case retry interval (0.7 s).
NO_RECONNECT_WINDOW_S = 3.0
# Deadline for the fixed client to reconnect. It usually needs well under a
# second, but a retry that lands in ZooKeeper 3.8's start-up race (see
# ZooKeeperServer.start) hangs for the client's connect timeout, 10 s with
# kazoo's default session timeout, and then reconnects with a new session.
RECONNECT_TIMEOUT_S = 25.0
START_TIMEOUT_S = 15.0


def _outage(server: ZooKeeperServer, program: Program) -> tuple[int, int]:
    """Kill the server for OUTAGE_S and start it again.

    Returns the program's output marks (line counts) at the stop and at the
    restart, to tell what it printed during and after the outage.
    """
    stopped = program.mark()
    server.stop()
    time.sleep(OUTAGE_S)  # the deliberate outage
    restarted = program.mark()
    server.start()
    return stopped, restarted


def _lines_between(program: Program, start: int, end: int) -> list[str]:
    return program.lines()[start:end]


def test_finite_connection_retry_stays_lost(zk_server_private, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk401_bad.py")
    program = programs.start(bad, zk_server_private.hosts)
    program.wait_for_line("STATE CONNECTED", START_TIMEOUT_S)

    stopped, restarted = _outage(zk_server_private, program)

    during = _lines_between(program, stopped, restarted)
    assert "STATE LOST" in during, (
        "the finite retry policy should give up during the outage\n"
        + program.describe()
    )
    assert_stays(
        lambda: program.find_line("STATE CONNECTED", after=restarted) is None,
        NO_RECONNECT_WINDOW_S,
        message=lambda: "the bad client must not reconnect\n" + program.describe(),
    )
    assert program.finish() == 0, program.describe()
    assert "FINAL connected=False" in program.output(), program.describe()


def test_finite_connection_retry_fixed_reconnects(
    zk_server_private, programs: ProgramRunner
):
    bad = programs.write(BAD_PROGRAM, "zk401_bad.py")
    fixed = bad.with_name("zk401_fixed.py")
    shutil.copy(bad, fixed)
    original = fixed.read_text()

    result = zklint_fix(fixed)
    assert result.returncode == 0, (
        f"zklint exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    # The safe fix touches max_tries only: the rest of the file is unchanged.
    assert fixed.read_text() == original.replace("max_tries=3", "max_tries=-1")

    program = programs.start(fixed, zk_server_private.hosts)
    program.wait_for_line("STATE CONNECTED", START_TIMEOUT_S)

    stopped, restarted = _outage(zk_server_private, program)

    assert "STATE LOST" not in _lines_between(program, stopped, restarted), (
        "the fixed client gave up during the outage\n" + program.describe()
    )
    program.wait_for_line("STATE CONNECTED", RECONNECT_TIMEOUT_S, after=restarted)
    assert program.finish() == 0, program.describe()
    assert "FINAL connected=True" in program.output(), program.describe()
