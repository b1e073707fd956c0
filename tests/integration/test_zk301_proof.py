"""Proof of ZK301 blocking-call-in-callback against a real ZooKeeper.

kazoo delivers every watch on one callback thread. A watch callback that sleeps
holds that thread, so a second watch, fired right after the first, is delivered
only once the sleep is over. After `zklint check --fix --unsafe-fixes` (the sleep
and the rest of the callback run in `zk.handler.spawn`) the second watch is
delivered at once, while the first callback's work is still sleeping. The same
holds for a lambda watch whose blocking call sits inside a larger expression (the
fix wraps the expression in `zk.handler.spawn(lambda: ...)`).
"""

from __future__ import annotations

import shutil

from .support import ProgramRunner, zklint_fix

# The code under proof. Two re-arming watches: /a's callback sleeps (say, to let
# writers settle) before it reloads; /b's callback only reports. Lives until the
# test closes its stdin.
BAD_PROGRAM = '''
    import os
    import sys
    import time

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
    BASE = os.environ["ZK_PATH"]
    SETTLE_S = float(os.environ["SETTLE_S"])


    def on_slow(event):
        print("SLOW START", flush=True)
        time.sleep(SETTLE_S)
        print("SLOW DONE", flush=True)
        zk.get(BASE + "/a", watch=on_slow)


    def on_fast(event):
        print("FAST", flush=True)
        zk.get(BASE + "/b", watch=on_fast)


    def main():
        zk.start()
        try:
            zk.ensure_path(BASE + "/a")
            zk.ensure_path(BASE + "/b")
            zk.get(BASE + "/a", watch=on_slow)
            zk.get(BASE + "/b", watch=on_fast)
            print("ARMED", flush=True)
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

# What the fix must write in place of the sleep and the rest of on_slow.
SLOW_TAIL = (
    "    time.sleep(SETTLE_S)\n"
    "    print(\"SLOW DONE\", flush=True)\n"
    "    zk.get(BASE + \"/a\", watch=on_slow)\n"
)
SLOW_TAIL_FIXED = (
    "\n"
    "    def work():\n"
    "        time.sleep(SETTLE_S)\n"
    "        print(\"SLOW DONE\", flush=True)\n"
    "        zk.get(BASE + \"/a\", watch=on_slow)\n"
    "    zk.handler.spawn(work)\n"
)

# Long enough that "delivered after the sleep" cannot be a scheduling accident.
SETTLE_S = 3.0
START_TIMEOUT_S = 15.0
EVENT_TIMEOUT_S = 10.0 + SETTLE_S


def _fire_both(zk_observer, zk_path: str) -> None:
    """Change /a, then /b: the server sends the two watch events in that order."""
    zk_observer.set(zk_path + "/a", b"1")
    zk_observer.set(zk_path + "/b", b"1")


def _start(programs: ProgramRunner, script, zk_server, zk_path):
    program = programs.start(script, zk_server.hosts, env={"ZK_PATH": zk_path, "SETTLE_S": str(SETTLE_S)})
    program.wait_for_line("ARMED", START_TIMEOUT_S)
    return program


def test_sleeping_watch_delays_the_next_watch(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk301_bad.py")
    program = _start(programs, bad, zk_server, zk_path)

    _fire_both(zk_observer, zk_path)
    fast = program.wait_for_line("FAST", EVENT_TIMEOUT_S)
    slow_done = program.find_line("SLOW DONE")
    assert slow_done is not None and slow_done < fast, (
        "the second watch must wait for the sleeping callback\n" + program.describe()
    )
    assert program.finish() == 0, program.describe()


def test_sleeping_watch_fixed_does_not_delay(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk301_bad.py")
    fixed = bad.with_name("zk301_fixed.py")
    shutil.copy(bad, fixed)
    original = fixed.read_text()
    assert original.count(SLOW_TAIL) == 1

    result = zklint_fix(fixed, unsafe=True)
    assert result.returncode == 0, (
        f"zklint exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert fixed.read_text() == original.replace(SLOW_TAIL, SLOW_TAIL_FIXED)

    program = _start(programs, fixed, zk_server, zk_path)
    _fire_both(zk_observer, zk_path)
    fast = program.wait_for_line("FAST", EVENT_TIMEOUT_S)
    slow_done = program.find_line("SLOW DONE")
    assert slow_done is None or slow_done > fast, (
        "the fixed callback must not hold the callback thread\n" + program.describe()
    )
    # The moved work still runs, and re-arms its watch.
    program.wait_for_line("SLOW DONE", EVENT_TIMEOUT_S)
    assert program.finish() == 0, program.describe()


# The slow watch as a lambda whose blocking call sits inside a larger expression;
# the unsafe fix runs the whole expression in zk.handler.spawn(lambda: ...).
LAMBDA_SLOW = (
    'zk.get(BASE + "/a", watch=lambda event: print('
    '"SLOW DONE", subprocess.run(["sleep", str(SETTLE_S)]).returncode, flush=True))'
)
SLOW_CALLBACK = (
    "    def on_slow(event):\n"
    "        print(\"SLOW START\", flush=True)\n"
    "        time.sleep(SETTLE_S)\n"
    "        print(\"SLOW DONE\", flush=True)\n"
    "        zk.get(BASE + \"/a\", watch=on_slow)\n\n\n"
)
LAMBDA_PROGRAM = (
    BAD_PROGRAM.replace("    import time\n", "    import subprocess\n")
    .replace(SLOW_CALLBACK, "")
    .replace('zk.get(BASE + "/a", watch=on_slow)\n', LAMBDA_SLOW + "\n")
)
LAMBDA_FIXED = LAMBDA_PROGRAM.replace(
    'lambda event: print("SLOW DONE", subprocess.run(["sleep", str(SETTLE_S)]).returncode, flush=True)',
    'lambda event: zk.handler.spawn(lambda: print('
    '"SLOW DONE", subprocess.run(["sleep", str(SETTLE_S)]).returncode, flush=True))',
)


def test_blocking_lambda_watch_delays_the_next_watch(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    assert LAMBDA_SLOW in LAMBDA_PROGRAM and "on_slow" not in LAMBDA_PROGRAM
    bad = programs.write(LAMBDA_PROGRAM, "zk301_lambda_bad.py")
    program = _start(programs, bad, zk_server, zk_path)
    _fire_both(zk_observer, zk_path)
    fast = program.wait_for_line("FAST", EVENT_TIMEOUT_S)
    slow_done = program.find_line("SLOW DONE")
    assert slow_done is not None and slow_done < fast, program.describe()
    assert program.finish() == 0, program.describe()


def test_blocking_lambda_watch_fixed_does_not_delay(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(LAMBDA_PROGRAM, "zk301_lambda_bad.py")
    fixed = bad.with_name("zk301_lambda_fixed.py")
    shutil.copy(bad, fixed)
    # select: the lambda is also a one-shot watch (ZK304); only ZK301's fix is under proof.
    result = zklint_fix(fixed, unsafe=True, select="ZK301")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert fixed.read_text() == programs.write(LAMBDA_FIXED, "expected.py").read_text()

    program = _start(programs, fixed, zk_server, zk_path)
    _fire_both(zk_observer, zk_path)
    fast = program.wait_for_line("FAST", EVENT_TIMEOUT_S)
    slow_done = program.find_line("SLOW DONE")
    assert slow_done is None or slow_done > fast, program.describe()
    program.wait_for_line("SLOW DONE 0", EVENT_TIMEOUT_S)
    assert program.finish() == 0, program.describe()
