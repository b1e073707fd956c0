"""Proof of ZK205 client-shared-across-fork against a real ZooKeeper.

A client started before `os.fork()` is copied into the child without its
connection thread: the child's `exists("/")` queues a request nobody sends and
waits for a reply nobody reads. The program bounds the child (it is killed after
CHILD_BOUND_S) and reports what happened. A client built in the child after the
fork answers at once, and so does a worker of a `spawn` pool, which builds its
own client when it imports the program. ZK205 has no automatic fix.
"""

from __future__ import annotations

from .support import ProgramRunner, zklint_check

# The parent waits for the child at most this long, then kills it.
CHILD_BOUND_S = 3.0

# What the bad and good programs share: run `child()` in a forked child and
# report whether it finished within the bound.
_PARENT = '''

    def wait_for_child(pid):
        deadline = time.monotonic() + {bound}
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print(f"CHILD EXITED {{os.waitstatus_to_exitcode(status)}}", flush=True)
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print("CHILD HUNG", flush=True)
'''.format(bound=CHILD_BOUND_S)

BAD_PROGRAM = '''
    import os
    import signal
    import time

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
    zk.start()
''' + _PARENT + '''

    def main():
        pid = os.fork()
        if pid == 0:
            zk.exists("/")
            print("CHILD ANSWERED", flush=True)
            os._exit(0)
        wait_for_child(pid)
        print(f"PARENT ANSWERED {zk.exists('/') is not None}", flush=True)
        zk.stop()
        zk.close()


    if __name__ == "__main__":
        main()
'''

# The recommended shape: the child builds and starts its own client after the fork.
GOOD_PROGRAM = '''
    import os
    import signal
    import time

    from kazoo.client import KazooClient

    HOSTS = os.environ["ZK_HOSTS"]
    zk = KazooClient(hosts=HOSTS)
    zk.start()
''' + _PARENT + '''

    def main():
        pid = os.fork()
        if pid == 0:
            child_zk = KazooClient(hosts=HOSTS)
            child_zk.start()
            child_zk.exists("/")
            print("CHILD ANSWERED", flush=True)
            child_zk.stop()
            child_zk.close()
            os._exit(0)
        wait_for_child(pid)
        print(f"PARENT ANSWERED {zk.exists('/') is not None}", flush=True)
        zk.stop()
        zk.close()


    if __name__ == "__main__":
        main()
'''

# The other recommended shape: a spawn pool. Its worker imports the program anew
# (as __mp_main__), so the module-level client it uses is its own.
SPAWN_PROGRAM = '''
    import multiprocessing
    import os

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
    zk.start()


    def probe(path):
        return zk.exists(path) is not None


    def main():
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            answered = pool.apply_async(probe, ("/",)).get(timeout=20)
        print(f"CHILD ANSWERED {answered}", flush=True)
        zk.stop()
        zk.close()


    if __name__ == "__main__":
        main()
'''

RUN_TIMEOUT_S = 40.0


def _run(programs: ProgramRunner, source: str, name: str, hosts: str):
    script = programs.write(source, name)
    result = programs.run(script, hosts, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return script, result.stdout.splitlines()


def test_child_of_a_started_client_hangs(zk_server, programs: ProgramRunner):
    script, lines = _run(programs, BAD_PROGRAM, "zk205_bad.py", zk_server.hosts)
    lint = zklint_check(script, "ZK205")
    assert lint.returncode == 1 and "ZK205" in lint.stdout, f"{lint.returncode}\n{lint.stdout}\n{lint.stderr}"

    assert "CHILD HUNG" in lines, lines
    assert "CHILD ANSWERED" not in lines, lines
    assert "PARENT ANSWERED True" in lines, lines


def test_client_built_after_the_fork_answers(zk_server, programs: ProgramRunner):
    script, lines = _run(programs, GOOD_PROGRAM, "zk205_good.py", zk_server.hosts)
    lint = zklint_check(script, "ZK205")
    assert lint.returncode == 0 and "ZK205" not in lint.stdout, f"{lint.returncode}\n{lint.stdout}\n{lint.stderr}"

    assert "CHILD ANSWERED" in lines and "CHILD EXITED 0" in lines, lines
    assert "CHILD HUNG" not in lines, lines
    assert "PARENT ANSWERED True" in lines, lines


def test_spawn_pool_worker_answers(zk_server, programs: ProgramRunner):
    script, lines = _run(programs, SPAWN_PROGRAM, "zk205_spawn.py", zk_server.hosts)
    lint = zklint_check(script, "ZK205")
    assert lint.returncode == 0 and "ZK205" not in lint.stdout, f"{lint.returncode}\n{lint.stdout}\n{lint.stderr}"

    assert "CHILD ANSWERED True" in lines, lines
