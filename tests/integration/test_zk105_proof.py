"""Proof of ZK105 lock-held-across-session-loss against a real ZooKeeper.

Two processes run the same program and contend for one kazoo Lock. The first
one in (the holder) is frozen with SIGSTOP until its session has expired: the
server deletes its lock node and the second process acquires the lock. Then
the holder is resumed (SIGCONT), as after a long GC pause or a VM stall.

- The flagged code (the rule's `example`: `with lock:` and no state listener)
  is never told: `Lock.is_acquired` stays True and it keeps doing its work, so
  both processes are inside the critical section at once.
- The recommended code (the rule's `use_instead`, written by hand since ZK105
  has no fix: a state listener sets a "lock lost" flag on SUSPENDED/LOST and
  each iteration of the critical section checks it) stops its work as soon as
  its client sees the dropped connection.

Every program line carries `t=` from time.monotonic(): CLOCK_MONOTONIC, one
clock for all processes on Linux, so times of the two programs compare.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kazoo.client import KazooClient

from .support import Program, ProgramRunner, assert_stays, wait_until, zklint_check

# The flagged code. The critical section loops over "batches" until the test
# closes stdin; each batch prints a heartbeat (with `lock.is_acquired`) and
# works for ITERATION_S.
BAD_PROGRAM = '''
    import os
    import sys
    import threading
    import time

    from kazoo.client import KazooClient

    NAME = os.environ["WORKER"]
    done = threading.Event()


    output = threading.Lock()  # whole lines, whichever thread prints


    def say(what, **fields):
        extra = "".join(" %s=%s" % item for item in fields.items())
        with output:
            print("%s %s t=%.6f%s" % (what, NAME, time.monotonic(), extra), flush=True)


    def wait_for_end():
        sys.stdin.read()
        done.set()


    def pending_batches():
        batch = 0
        while not done.is_set():
            batch += 1
            yield batch


    def charge(batch, lock):
        say("HEARTBEAT", n=batch, acquired=lock.is_acquired)
        time.sleep(0.1)


    def main():
        threading.Thread(target=wait_for_end, daemon=True).start()
        zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
        zk.start()
        try:
            say("SESSION", id=zk.client_id[0])
            lock = zk.Lock(os.environ["ZK_PATH"], NAME)
            say("WAITING")
            with lock:
                say("ENTER")
                for batch in pending_batches():
                    charge(batch, lock)  # keeps running after the session is lost
                say("LEAVE")
            done.wait()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

# The recommended code: the same program with the rule's `use_instead` added.
GOOD_PROGRAM = '''
    import os
    import sys
    import threading
    import time

    from kazoo.client import KazooClient
    from kazoo.protocol.states import KazooState

    NAME = os.environ["WORKER"]
    done = threading.Event()
    lock_lost = threading.Event()


    output = threading.Lock()  # whole lines, whichever thread prints


    def say(what, **fields):
        extra = "".join(" %s=%s" % item for item in fields.items())
        with output:
            print("%s %s t=%.6f%s" % (what, NAME, time.monotonic(), extra), flush=True)


    def watch_session(state):
        say("STATE", state=state)
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            lock_lost.set()  # the lock may belong to someone else now


    def wait_for_end():
        sys.stdin.read()
        done.set()


    def pending_batches():
        batch = 0
        while not done.is_set():
            batch += 1
            yield batch


    def charge(batch, lock):
        say("HEARTBEAT", n=batch, acquired=lock.is_acquired)
        time.sleep(0.1)


    def main():
        threading.Thread(target=wait_for_end, daemon=True).start()
        zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
        zk.add_listener(watch_session)
        zk.start()
        try:
            say("SESSION", id=zk.client_id[0])
            lock = zk.Lock(os.environ["ZK_PATH"], NAME)
            say("WAITING")
            try:
                with lock:
                    lock_lost.clear()
                    say("ENTER")
                    for batch in pending_batches():
                        if lock_lost.is_set():
                            say("lost lock, stopping")
                            raise RuntimeError("ZooKeeper session lost while holding the lock")
                        charge(batch, lock)
                    say("LEAVE")
            except RuntimeError as error:
                say("STOPPED", reason=repr(str(error)))
            done.wait()
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

START_TIMEOUT_S = 15.0
# The test server's sessions last at most 2 s: the frozen holder's session
# expires, its lock node goes and the other process enters within a few
# seconds. The holder stays frozen until then (about 2-3 s).
TAKEOVER_TIMEOUT_S = 15.0
# Heartbeats the bad holder must print after the other process entered (one
# every 0.1 s), and the deadline for them.
OVERLAP_HEARTBEATS = 5
RESUME_TIMEOUT_S = 10.0
# How long the good holder is watched doing nothing more once it stopped.
QUIET_S = 1.0


@dataclass
class Line:
    kind: str
    t: float
    fields: dict


def _events(program: Program, kind: str) -> list[Line]:
    """The program's lines `<kind> <worker> t=<monotonic> [key=value ...]`."""
    found = []
    for line in program.lines():
        if line.startswith(kind + " "):
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            found.append(Line(kind, float(fields["t"]), fields))
    return found


def _one(program: Program, kind: str, timeout: float) -> Line:
    """Wait for the first `kind` line and return it."""
    program.wait_for_line(kind + " ", timeout)
    return _events(program, kind)[0]


def _lock_owners(observer: KazooClient, lock_path: str) -> set[int]:
    owners = set()
    for child in observer.get_children(lock_path):
        stat = observer.exists(f"{lock_path}/{child}")
        if stat is not None:
            owners.add(stat.ephemeralOwner)
    return owners


def _contend_and_freeze(script, zk_server, observer: KazooClient, lock_path: str, programs: ProgramRunner):
    """Start the holder and the waiter, freeze the holder until the waiter got
    the lock, resume it. Returns (holder, waiter, waiter's ENTER, resume time)."""
    holder = programs.start(script, zk_server.hosts, env={"ZK_PATH": lock_path, "WORKER": "A"})
    holder_session = int(_one(holder, "SESSION", START_TIMEOUT_S).fields["id"])
    _one(holder, "ENTER", START_TIMEOUT_S)
    holder.wait_for_line("HEARTBEAT", START_TIMEOUT_S)

    waiter = programs.start(script, zk_server.hosts, env={"ZK_PATH": lock_path, "WORKER": "B"})
    waiter_session = int(_one(waiter, "SESSION", START_TIMEOUT_S).fields["id"])
    waiter.wait_for_line("WAITING", START_TIMEOUT_S)
    # The waiter's contender node is queued behind the holder's.
    wait_until(
        lambda: _lock_owners(observer, lock_path) == {holder_session, waiter_session},
        START_TIMEOUT_S,
        message="both contenders' lock nodes",
    )
    assert waiter.find_line("ENTER") is None, "only one process holds the lock\n" + waiter.describe()

    holder.sigstop()
    try:
        entered = _one(waiter, "ENTER", TAKEOVER_TIMEOUT_S)
        # The frozen holder's session expired: its lock node is gone.
        assert _lock_owners(observer, lock_path) == {waiter_session}
    finally:
        resumed = time.monotonic()
        holder.sigcont()
    return holder, waiter, entered, resumed


def test_holder_keeps_working_after_session_loss(
    zk_server, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner
):
    bad = programs.write(BAD_PROGRAM, "zk105_bad.py")
    lint = zklint_check(bad, "ZK105")
    assert lint.returncode == 1 and "ZK105" in lint.stdout, f"{lint.returncode}\n{lint.stdout}\n{lint.stderr}"

    holder, waiter, entered, _ = _contend_and_freeze(bad, zk_server, zk_observer, zk_path, programs)

    def overlapping() -> list[Line]:
        return [e for e in _events(holder, "HEARTBEAT") if e.t > entered.t]

    wait_until(
        lambda: len(overlapping()) >= OVERLAP_HEARTBEATS,
        RESUME_TIMEOUT_S,
        message=lambda: "the resumed holder's heartbeats\n" + holder.describe(),
    )
    # Both inside at once: while the holder keeps beating (still believing it
    # holds the lock), the other process, which entered after the holder's
    # session expired, beats between the holder's beats and has not left.
    late = overlapping()
    assert all(e.fields["acquired"] == "True" for e in late), holder.describe()
    between = [e for e in _events(waiter, "HEARTBEAT") if late[0].t < e.t < late[-1].t]
    assert len(between) >= 2, holder.describe() + waiter.describe()
    assert waiter.find_line("LEAVE") is None and holder.find_line("LEAVE") is None
    assert _lock_owners(zk_observer, zk_path) == {int(_events(waiter, "SESSION")[0].fields["id"])}

    assert waiter.finish() == 0, waiter.describe()
    assert holder.finish() == 0, holder.describe()


def test_holder_stops_with_lock_lost_flag(
    zk_server, zk_observer: KazooClient, zk_path: str, programs: ProgramRunner
):
    good = programs.write(GOOD_PROGRAM, "zk105_good.py")
    lint = zklint_check(good, "ZK105")
    assert lint.returncode == 0 and "ZK105" not in lint.stdout, f"{lint.returncode}\n{lint.stdout}\n{lint.stderr}"

    holder, waiter, entered, resumed = _contend_and_freeze(good, zk_server, zk_observer, zk_path, programs)

    stopped = _one(holder, "lost lock, stopping", RESUME_TIMEOUT_S)
    holder.wait_for_line("STOPPED", RESUME_TIMEOUT_S)
    # The holder was frozen while the other entered, so it could only notice after SIGCONT.
    assert stopped.t > entered.t and stopped.t >= resumed
    # It stopped because its listener saw the connection go.
    states = [e for e in _events(holder, "STATE") if e.t >= resumed]
    assert states and states[0].fields["state"] in ("SUSPENDED", "LOST"), holder.describe()
    assert states[0].t <= stopped.t, holder.describe()
    beats = _events(holder, "HEARTBEAT")
    # Overlap, precisely: a holder heartbeat stamped after the other process's
    # ENTER. SIGSTOP lands mid-iteration (in its 0.1 s of work); on SIGCONT the
    # main thread and kazoo's connection thread run at once, so the next
    # iteration's flag check may win the race against the listener that the
    # connection thread calls when it reads the closed socket. That one
    # iteration is allowed; none after it, and none after the stop.
    late = [e for e in beats if e.t > entered.t]
    assert len(late) <= 1, f"{len(late)} heartbeats after the other entered\n" + holder.describe()
    assert all(e.t < stopped.t for e in beats), holder.describe()
    assert_stays(
        lambda: len(_events(holder, "HEARTBEAT")) == len(beats),
        QUIET_S,
        message=lambda: "the holder stopped working\n" + holder.describe(),
    )
    # The other process is alone inside, still working.
    assert len([e for e in _events(waiter, "HEARTBEAT") if e.t > stopped.t]) >= 2, waiter.describe()

    assert waiter.finish() == 0, waiter.describe()
    assert holder.finish() == 0, holder.describe()
