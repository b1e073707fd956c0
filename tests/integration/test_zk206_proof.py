"""Proof of ZK206 close-before-stop against a real ZooKeeper.

`close()` on a running client raises Exception('Cannot close connection until it is
stopped'): the cleanup crashes the program, and since stop() never ran no Close
request reached the server, so the session and its ephemeral node outlive the
process until the session timeout. Two shapes: a `finally:` that only closes, and
`with contextlib.closing(zk):`. After `zklint check --fix --select ZK206` (stop()
before close(); closing() becomes try/finally with stop() then close()) the program
exits cleanly and the node is gone at once.

The test server clamps sessions to at most 2 s, and the programs ask for 2 s.
"""

from __future__ import annotations

import shutil
import time

import pytest

from .support import ProgramRunner, assert_stays, wait_until, zklint_check, zklint_fix

# A worker that registers itself and, once the test closes its stdin, cleans up
# in a finally block that closes without stopping.
FINALLY_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient


    def serve(hosts, node):
        zk = KazooClient(hosts=hosts, timeout=2.0)
        zk.start()
        try:
            zk.create(node, b"", ephemeral=True, makepath=True)
            print("REGISTERED", flush=True)
            sys.stdin.read()
        finally:
            zk.close()
        print("CLEAN EXIT", flush=True)


    if __name__ == "__main__":
        serve(os.environ["ZK_HOSTS"], os.environ["ZK_NODE"])
'''

FINALLY_FIXED = FINALLY_PROGRAM.replace(
    "        finally:\n            zk.close()",
    "        finally:\n            zk.stop()\n            zk.close()",
)

# The same worker relying on contextlib.closing() to clean up.
CLOSING_PROGRAM = '''
    import os
    import sys
    from contextlib import closing

    from kazoo.client import KazooClient


    def serve(hosts, node):
        zk = KazooClient(hosts=hosts, timeout=2.0)
        zk.start()
        with closing(zk):
            zk.create(node, b"", ephemeral=True, makepath=True)
            print("REGISTERED", flush=True)
            sys.stdin.read()
        print("CLEAN EXIT", flush=True)


    if __name__ == "__main__":
        serve(os.environ["ZK_HOSTS"], os.environ["ZK_NODE"])
'''

CLOSING_FIXED = CLOSING_PROGRAM.replace(
    "        with closing(zk):\n"
    "            zk.create(node, b\"\", ephemeral=True, makepath=True)\n"
    "            print(\"REGISTERED\", flush=True)\n"
    "            sys.stdin.read()\n",
    "        try:\n"
    "            zk.create(node, b\"\", ephemeral=True, makepath=True)\n"
    "            print(\"REGISTERED\", flush=True)\n"
    "            sys.stdin.read()\n"
    "        finally:\n"
    "            zk.stop()\n"
    "            zk.close()\n",
)

SCENARIOS = {"finally": (FINALLY_PROGRAM, FINALLY_FIXED), "closing": (CLOSING_PROGRAM, CLOSING_FIXED)}

SESSION_TIMEOUT_S = 2.0
# kazoo pings every third of the session timeout, so the orphaned session outlives
# the process by at least two thirds of it: watch for half of it.
LINGER_AT_LEAST_S = SESSION_TIMEOUT_S / 2
EXPIRY_DEADLINE_S = SESSION_TIMEOUT_S + 8.0
# With stop() the Close is answered before the process exits.
GONE_AT_ONCE_S = 0.5
START_TIMEOUT_S = 15.0


def _register_and_exit(programs: ProgramRunner, script, hosts, node, observer):
    program = programs.start(script, hosts, env={"ZK_NODE": node})
    program.wait_for_line("REGISTERED", START_TIMEOUT_S)
    assert observer.exists(node), program.describe()
    code = program.finish()
    return program, code, time.monotonic()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_close_before_stop_crashes_and_leaves_the_session(scenario, zk_server, zk_observer, zk_path, programs):
    script = programs.write(SCENARIOS[scenario][0], f"zk206_{scenario}_bad.py")
    lint = zklint_check(script, "ZK206")
    assert lint.returncode == 1 and "ZK206" in lint.stdout, f"{lint.stdout}\n{lint.stderr}"

    node = zk_path + "/worker"
    program, code, exited = _register_and_exit(programs, script, zk_server.hosts, node, zk_observer)
    # The cleanup itself raised: the program never got past it.
    assert code == 1, program.describe()
    assert "Cannot close connection until it is stopped" in program.errors(), program.describe()
    assert program.find_line("CLEAN EXIT") is None, program.describe()
    # No Close was sent: the session, and the node, outlive the process.
    assert_stays(
        lambda: zk_observer.exists(node),
        LINGER_AT_LEAST_S,
        message=lambda: "the crashed process's node should linger\n" + program.describe(),
    )
    wait_until(lambda: not zk_observer.exists(node), EXPIRY_DEADLINE_S, message="the session to expire")
    assert time.monotonic() - exited >= LINGER_AT_LEAST_S


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fixed_program_stops_then_closes(scenario, zk_server, zk_observer, zk_path, programs):
    source, expected = SCENARIOS[scenario]
    bad = programs.write(source, f"zk206_{scenario}_bad.py")
    fixed = bad.with_name(f"zk206_{scenario}_fixed.py")
    shutil.copy(bad, fixed)

    result = zklint_fix(fixed, select="ZK206")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert fixed.read_text() == programs.write(expected, "expected.py").read_text()

    node = zk_path + "/worker"
    program, code, _ = _register_and_exit(programs, fixed, zk_server.hosts, node, zk_observer)
    assert code == 0 and program.find_line("CLEAN EXIT") is not None, program.describe()
    assert program.errors() == "", program.describe()
    wait_until(
        lambda: not zk_observer.exists(node),
        GONE_AT_ONCE_S,
        message=lambda: "the stopped session's node to be gone\n" + program.describe(),
    )
