"""Proof of ZK305 watch-recipe-rebuilt against a real ZooKeeper.

The program builds a DataWatch on a config node inside its ChildrenWatch
function, so every membership change adds one more watcher. After N membership
changes, one change of the config runs the config function N + 1 times (the
first build plus one per change). With a guard that remembers the watched path,
it runs once. ZK305 has no automatic fix.
"""

from __future__ import annotations

from kazoo.client import KazooClient

from .support import Program, ProgramRunner, assert_stays, wait_until, zklint_check

PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
    BASE = os.environ["ZK_PATH"]
    watched = set()


    def on_config(data, stat):
        print(f"CONFIG {{data.decode()}}", flush=True)


    def on_members(children):
{body}
        print(f"MEMBERS {{len(children)}}", flush=True)


    def main():
        zk.start()
        try:
            zk.ChildrenWatch(BASE + "/members", on_members)
            print("READY", flush=True)
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

BAD_PROGRAM = PROGRAM.format(body='''\
        zk.DataWatch(BASE + "/config", on_config)''')

GOOD_PROGRAM = PROGRAM.format(body='''\
        if "config" not in watched:
            watched.add("config")
            zk.DataWatch(BASE + "/config", on_config)''')

CHANGES = 3
START_TIMEOUT_S = 15.0
EVENT_TIMEOUT_S = 10.0
# How long the count of calls must stay put once reached: many watch round trips.
SETTLE_S = 1.0


def _run(program: Program, observer: KazooClient, base: str, expected: int) -> None:
    """Make CHANGES membership changes, then one config change; the config function
    must see that change exactly `expected` times."""
    program.wait_for_line("MEMBERS 0", START_TIMEOUT_S)
    for index in range(1, CHANGES + 1):
        observer.create(f"{base}/members/m{index}")
        program.wait_for_line(f"MEMBERS {index}", EVENT_TIMEOUT_S)
    observer.set(f"{base}/config", b"final")

    def calls() -> int:
        return sum(1 for line in program.lines() if line == "CONFIG final")

    wait_until(lambda: calls() >= expected, EVENT_TIMEOUT_S, message=lambda: f"{expected} calls\n{program.describe()}")
    # No watcher fires late: the count stays what it is.
    assert_stays(lambda: calls() == expected, SETTLE_S, message=program.describe)


def _setup(observer: KazooClient, base: str) -> None:
    observer.create(f"{base}/config", b"initial", makepath=True)
    observer.create(f"{base}/members")


def test_rebuilt_watch_fires_once_per_build(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk305_bad.py")
    lint = zklint_check(bad, "ZK305")
    assert lint.returncode == 1 and "ZK305" in lint.stdout, f"{lint.returncode}\n{lint.stdout}\n{lint.stderr}"

    _setup(zk_observer, zk_path)
    program = programs.start(bad, zk_server.hosts, env={"ZK_PATH": zk_path})
    _run(program, zk_observer, zk_path, expected=CHANGES + 1)
    assert program.finish() == 0, program.describe()


def test_guarded_watch_fires_once(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    good = programs.write(GOOD_PROGRAM, "zk305_good.py")
    lint = zklint_check(good, "ZK305")
    assert lint.returncode == 0 and "ZK305" not in lint.stdout, f"{lint.returncode}\n{lint.stdout}\n{lint.stderr}"

    _setup(zk_observer, zk_path)
    program = programs.start(good, zk_server.hosts, env={"ZK_PATH": zk_path})
    _run(program, zk_observer, zk_path, expected=1)
    assert program.finish() == 0, program.describe()
