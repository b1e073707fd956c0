"""Proof of ZK304 one-shot-watch against a real ZooKeeper.

A raw `watch=` callback that does not re-arm sees the first change of the node
and none after it. After `zklint check --fix --unsafe-fixes` (the DataWatch
recipe) the same program follows every change.
"""

from __future__ import annotations

import shutil

from .support import ProgramRunner, assert_stays, zklint_fix

# The code under proof: reload a setting when its node changes. Lives until the
# test closes its stdin.
BAD_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
    PATH = os.environ["ZK_PATH"]


    def on_change(event):
        data, stat = zk.get(PATH)
        print(f"DATA {data.decode()}", flush=True)


    def main():
        zk.start()
        try:
            zk.get(PATH, watch=on_change)
            print("ARMED", flush=True)
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

# The two rewrites the fix must make, and nothing else.
REWRITES = [
    (
        "def on_change(event):\n"
        "    data, stat = zk.get(PATH)\n",
        "def on_change(data, stat):\n"
        "    if stat is None:\n"
        "        return\n",
    ),
    ("zk.get(PATH, watch=on_change)", "zk.DataWatch(PATH, on_change)"),
]

START_TIMEOUT_S = 15.0
EVENT_TIMEOUT_S = 10.0
# How long a change must go unnoticed: many watch round trips.
UNSEEN_WINDOW_S = 2.0


def _start(programs: ProgramRunner, script, zk_server, zk_observer, zk_path):
    zk_observer.create(zk_path, b"v0", makepath=True)
    program = programs.start(script, zk_server.hosts, env={"ZK_PATH": zk_path})
    program.wait_for_line("ARMED", START_TIMEOUT_S)
    return program


def test_raw_watch_sees_only_the_first_change(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk304_bad.py")
    program = _start(programs, bad, zk_server, zk_observer, zk_path)

    zk_observer.set(zk_path, b"v1")
    program.wait_for_line("DATA v1", EVENT_TIMEOUT_S)
    zk_observer.set(zk_path, b"v2")
    assert_stays(
        lambda: program.find_line("DATA v2") is None,
        UNSEEN_WINDOW_S,
        message=lambda: "the one-shot watch must miss the second change\n" + program.describe(),
    )
    assert program.finish() == 0, program.describe()


def test_raw_watch_fixed_follows_every_change(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk304_bad.py")
    fixed = bad.with_name("zk304_fixed.py")
    shutil.copy(bad, fixed)
    expected = fixed.read_text()
    for before, after in REWRITES:
        assert expected.count(before) == 1
        expected = expected.replace(before, after)

    result = zklint_fix(fixed, unsafe=True)
    assert result.returncode == 0, (
        f"zklint exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert fixed.read_text() == expected

    program = _start(programs, fixed, zk_server, zk_observer, zk_path)
    program.wait_for_line("DATA v0", EVENT_TIMEOUT_S)  # the recipe reads the node at once
    zk_observer.set(zk_path, b"v1")
    program.wait_for_line("DATA v1", EVENT_TIMEOUT_S)
    zk_observer.set(zk_path, b"v2")
    program.wait_for_line("DATA v2", EVENT_TIMEOUT_S)
    assert program.finish() == 0, program.describe()
