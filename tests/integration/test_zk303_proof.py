"""Proof of ZK303 lifecycle-call-in-callback against a real ZooKeeper.

`stop()` called from a watch callback runs on kazoo's callback thread, which
`stop()` must join: it raises `RuntimeError('cannot join current thread')` and
does not finish. (Whether the connection is closed by the time the callback goes
on is a race: `stop()` queued the close before it tried to join.) The pattern
its docs recommend (the callback signals, the main thread stops the client)
shuts the client down, and so does the unsafe fix (`zklint check --fix
--unsafe-fixes`), which runs the stop, and what follows it in the callback, in a
thread of its own (`client.handler.spawn`).
"""

from __future__ import annotations

import shutil

from .support import ProgramRunner, zklint_fix

# Shut down when /shutdown is created. The callback reports what stop() did.
BAD_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
    FLAG = os.environ["ZK_PATH"]


    def on_flag(event):
        print("SHUTDOWN REQUESTED", flush=True)
        try:
            zk.stop()
        except RuntimeError as exc:
            print(f"STOP FAILED: {exc}", flush=True)
        print(f"CONNECTED {zk.connected}", flush=True)


    def main():
        zk.start()
        try:
            zk.exists(FLAG, watch=on_flag)
            print("ARMED", flush=True)
            sys.stdin.read()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

# The recommended pattern: the callback only signals; the main thread stops.
GOOD_PROGRAM = '''
    import os
    import threading

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
    FLAG = os.environ["ZK_PATH"]
    shutdown = threading.Event()


    def main():
        zk.start()
        try:
            zk.exists(FLAG, watch=lambda event: shutdown.set())
            print("ARMED", flush=True)
            shutdown.wait()
            print("SHUTDOWN REQUESTED", flush=True)
        finally:
            zk.stop()
            zk.close()
        print(f"CONNECTED {zk.connected}", flush=True)


    if __name__ == "__main__":
        main()
'''

START_TIMEOUT_S = 15.0
EVENT_TIMEOUT_S = 10.0


def test_stop_in_watch_callback_fails(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk303_bad.py")
    program = programs.start(bad, zk_server.hosts, env={"ZK_PATH": zk_path})
    program.wait_for_line("ARMED", START_TIMEOUT_S)

    zk_observer.create(zk_path, makepath=True)
    failed = program.wait_for_line("STOP FAILED: cannot join current thread", EVENT_TIMEOUT_S)
    # The callback goes on after the failed stop(). Whether the client still reports
    # itself connected there is a race with the connection thread, which may already
    # have sent the close stop() queued first: not part of the proof (it once said
    # "CONNECTED False" on a busy machine).
    program.wait_for_line("CONNECTED ", EVENT_TIMEOUT_S, after=failed)
    # What the main thread's own stop()/close() do afterwards depends on timing
    # (close() may raise "Cannot close connection until it is stopped", or stop()
    # may hang): not part of the proof.
    program.sigkill()


def test_signalling_main_thread_stops(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    good = programs.write(GOOD_PROGRAM, "zk303_good.py")
    program = programs.start(good, zk_server.hosts, env={"ZK_PATH": zk_path})
    program.wait_for_line("ARMED", START_TIMEOUT_S)

    zk_observer.create(zk_path, makepath=True)
    program.wait_for_line("CONNECTED False", EVENT_TIMEOUT_S)
    assert program.finish() == 0, program.describe()


# What the unsafe fix must produce: the try around stop() and the report after it
# move into a nested function run by client.handler.spawn.
FIXED_PROGRAM = BAD_PROGRAM.replace(
    '''        print("SHUTDOWN REQUESTED", flush=True)
        try:
            zk.stop()
        except RuntimeError as exc:
            print(f"STOP FAILED: {exc}", flush=True)
        print(f"CONNECTED {zk.connected}", flush=True)
''',
    '''        print("SHUTDOWN REQUESTED", flush=True)

        def work():
            try:
                zk.stop()
            except RuntimeError as exc:
                print(f"STOP FAILED: {exc}", flush=True)
            print(f"CONNECTED {zk.connected}", flush=True)
        zk.handler.spawn(work)
''',
)


def test_fixed_callback_stops_the_client(zk_server, zk_observer, zk_path, programs: ProgramRunner):
    bad = programs.write(BAD_PROGRAM, "zk303_bad.py")
    fixed = bad.with_name("zk303_fixed.py")
    shutil.copy(bad, fixed)
    result = zklint_fix(fixed, unsafe=True, select="ZK303")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert fixed.read_text() == programs.write(FIXED_PROGRAM, "expected.py").read_text()

    program = programs.start(fixed, zk_server.hosts, env={"ZK_PATH": zk_path})
    program.wait_for_line("ARMED", START_TIMEOUT_S)
    zk_observer.create(zk_path, makepath=True)
    program.wait_for_line("CONNECTED False", EVENT_TIMEOUT_S)
    assert "STOP FAILED" not in program.output(), program.describe()
    assert program.finish() == 0, program.describe()
