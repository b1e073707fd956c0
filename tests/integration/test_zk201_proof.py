"""Proof of ZK201 client-not-stopped against a real ZooKeeper.

A process that exits without `stop()` never sends ZooKeeper the Close request: its
session, and the ephemeral node registered on it, live on until the server expires
the session (the session timeout), so a peer keeps seeing a dead process. After
`zklint check --fix` the same program stops its client on the way out (try/finally
in a function, `atexit` for a module-level client and for a client its function
means to outlive it) and the node is gone at once. The atexit fix must also keep
the registration alive after the registering function returns (a try/finally there
would deregister the service at once): the node is checked after that return.

The test server clamps sessions to at most 2 s, and the programs ask for 2 s.
"""

from __future__ import annotations

import shutil
import time

import pytest

from .support import ProgramRunner, assert_stays, wait_until, zklint_fix

# A worker that registers itself, then dies of an exception once the test closes
# its stdin: the function-scope case (fix: try/finally with stop() and close()).
FUNCTION_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient


    def serve(hosts, node):
        zk = KazooClient(hosts=hosts, timeout=2.0)
        zk.start()
        zk.create(node, b"", ephemeral=True, makepath=True)
        print("REGISTERED", flush=True)
        sys.stdin.read()
        raise RuntimeError("worker crashed")


    if __name__ == "__main__":
        serve(os.environ["ZK_HOSTS"], os.environ["ZK_NODE"])
'''

FUNCTION_FIXED = '''
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
            raise RuntimeError("worker crashed")
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        serve(os.environ["ZK_HOSTS"], os.environ["ZK_NODE"])
'''

# A service whose register() leaves an ephemeral node behind and returns: the client
# is meant to outlive it (fix: atexit registration, never a try/finally that would
# stop the client, and delete the node, as register() returns). REGISTERED is
# printed after register() has returned.
OUTLIVES_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient


    class Service:
        def register(self, hosts, node):
            zk = KazooClient(hosts=hosts, timeout=2.0)
            zk.start()
            zk.create(node, b"", ephemeral=True, makepath=True)


    if __name__ == "__main__":
        Service().register(os.environ["ZK_HOSTS"], os.environ["ZK_NODE"])
        print("REGISTERED", flush=True)
        sys.stdin.read()
'''

OUTLIVES_FIXED = '''
    import atexit
    import os
    import sys

    from kazoo.client import KazooClient


    class Service:
        def register(self, hosts, node):
            zk = KazooClient(hosts=hosts, timeout=2.0)
            zk.start()
            atexit.register(zk.close)  # atexit runs these in reverse: stop(), then close()
            atexit.register(zk.stop)
            zk.create(node, b"", ephemeral=True, makepath=True)


    if __name__ == "__main__":
        Service().register(os.environ["ZK_HOSTS"], os.environ["ZK_NODE"])
        print("REGISTERED", flush=True)
        sys.stdin.read()
'''

# A class that owns its client and no method stops it (fix: atexit registration
# after its start()).
CLASS_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient


    class Registration:
        def __init__(self, hosts, node):
            self.zk = KazooClient(hosts=hosts, timeout=2.0)
            self.node = node

        def open(self):
            self.zk.start()
            self.zk.create(self.node, b"", ephemeral=True, makepath=True)


    if __name__ == "__main__":
        Registration(os.environ["ZK_HOSTS"], os.environ["ZK_NODE"]).open()
        print("REGISTERED", flush=True)
        sys.stdin.read()
'''

CLASS_FIXED = CLASS_PROGRAM.replace(
    "    import os\n", "    import atexit\n    import os\n", 1
).replace(
    "            self.zk.start()\n",
    "            self.zk.start()\n"
    "            atexit.register(self.zk.close)  # atexit runs these in reverse: stop(), then close()\n"
    "            atexit.register(self.zk.stop)\n",
)

# A script whose module-level client registers, then exits normally when stdin is
# closed (fix: atexit registration of stop and close).
MODULE_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"], timeout=2.0)
    zk.start()
    zk.create(os.environ["ZK_NODE"], b"", ephemeral=True, makepath=True)
    print("REGISTERED", flush=True)
    sys.stdin.read()
'''

MODULE_FIXED = '''
    import atexit
    import os
    import sys

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"], timeout=2.0)
    zk.start()
    atexit.register(zk.close)  # atexit runs these in reverse: stop(), then close()
    atexit.register(zk.stop)
    zk.create(os.environ["ZK_NODE"], b"", ephemeral=True, makepath=True)
    print("REGISTERED", flush=True)
    sys.stdin.read()
'''

SCENARIOS = {
    # name: (program, expected fix, exit code of the program)
    "function": (FUNCTION_PROGRAM, FUNCTION_FIXED, 1),
    "module": (MODULE_PROGRAM, MODULE_FIXED, 0),
    "outlives": (OUTLIVES_PROGRAM, OUTLIVES_FIXED, 0),
    "class": (CLASS_PROGRAM, CLASS_FIXED, 0),
}

SESSION_TIMEOUT_S = 2.0
# The server last heard from the client at most a third of the session timeout
# before it died (kazoo pings that often), so the session outlives the process by
# at least two thirds of the timeout: watch for half of it.
LINGER_AT_LEAST_S = SESSION_TIMEOUT_S / 2
# Expiry happens at the latest one session timeout (plus a tick) after exit.
EXPIRY_DEADLINE_S = SESSION_TIMEOUT_S + 8.0
# With stop() the Close is answered before the process exits.
GONE_AT_ONCE_S = 0.5
START_TIMEOUT_S = 15.0


def _register_and_exit(programs: ProgramRunner, script, hosts, node, observer, exit_code):
    program = programs.start(script, hosts, env={"ZK_NODE": node})
    program.wait_for_line("REGISTERED", START_TIMEOUT_S)
    assert observer.exists(node), program.describe()
    assert program.finish() == exit_code, program.describe()
    return program, time.monotonic()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_unstopped_client_leaves_its_ephemeral(scenario, zk_server, zk_observer, zk_path, programs):
    source, _, exit_code = SCENARIOS[scenario]
    script = programs.write(source, f"zk201_{scenario}_bad.py")
    node = zk_path + "/worker"
    program, exited = _register_and_exit(programs, script, zk_server.hosts, node, zk_observer, exit_code)

    assert_stays(
        lambda: zk_observer.exists(node),
        LINGER_AT_LEAST_S,
        message=lambda: "the dead process's node should linger\n" + program.describe(),
    )
    wait_until(
        lambda: not zk_observer.exists(node),
        EXPIRY_DEADLINE_S,
        message="the session to expire and take the node",
    )
    assert time.monotonic() - exited >= LINGER_AT_LEAST_S


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fixed_client_removes_its_ephemeral_at_exit(scenario, zk_server, zk_observer, zk_path, programs):
    source, expected, exit_code = SCENARIOS[scenario]
    bad = programs.write(source, f"zk201_{scenario}_bad.py")
    fixed = bad.with_name(f"zk201_{scenario}_fixed.py")
    shutil.copy(bad, fixed)

    result = zklint_fix(fixed)
    # 1: other rules' findings without a safe fix may remain (ZK102, ZK402).
    assert result.returncode in (0, 1), f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert fixed.read_text() == programs.write(expected, "expected.py").read_text()

    node = zk_path + "/worker"
    program, _ = _register_and_exit(programs, fixed, zk_server.hosts, node, zk_observer, exit_code)
    wait_until(
        lambda: not zk_observer.exists(node),
        GONE_AT_ONCE_S,
        message=lambda: "the stopped session's node to be gone\n" + program.describe(),
    )
