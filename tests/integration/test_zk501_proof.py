"""Proof of ZK501 transaction-result-unchecked against a real ZooKeeper.

A transaction whose operation fails does not raise: commit() returns the errors
([RolledBackError(), NoNodeError()]), nothing is applied, and code that drops
the list carries on as if it had succeeded. After `zklint check --fix
--unsafe-fixes` the same program stops with the error of the failed operation,
and a transaction that succeeds still does.
"""

from __future__ import annotations

import shutil

import pytest
from kazoo.exceptions import NoNodeError

from .support import zklint_fix

# The code under proof, as users write it: both shapes the rule reports. Each
# transaction creates `<base>/<name>` and deletes its `-ready` marker; the
# marker exists only when the test made it, so without it the delete fails and
# the whole transaction is rolled back.
BAD_PROGRAM = '''
    import os
    import sys

    from kazoo.client import KazooClient


    def publish(zk: KazooClient, base, name):
        t = zk.transaction()
        t.create(f"{base}/{name}", b"payload")
        t.delete(f"{base}/{name}-ready")
        t.commit()


    def publish_with(zk: KazooClient, base, name):
        with zk.transaction() as txn:
            txn.create(f"{base}/{name}", b"payload")
            txn.delete(f"{base}/{name}-ready")


    def publish_logged(zk: KazooClient, base, name):
        with zk.transaction() as txn, open(os.devnull, "w") as log:
            txn.create(f"{base}/{name}", b"payload")
            txn.delete(f"{base}/{name}-ready")
            log.write(name)


    def publish_early(zk: KazooClient, base, name):
        with zk.transaction() as txn:
            txn.create(f"{base}/{name}", b"payload")
            txn.delete(f"{base}/{name}-ready")
            return name


    def main():
        form, base = sys.argv[1], sys.argv[2]
        zk = KazooClient(hosts=os.environ["ZK_HOSTS"])
        zk.start()
        try:
            if form == "commit":
                publish(zk, base, "job")
            elif form == "with":
                publish_with(zk, base, "job")
            elif form == "early":
                publish_early(zk, base, "job")
            else:
                publish_logged(zk, base, "job")
            print("PUBLISHED", flush=True)
        finally:
            zk.stop()
            zk.close()


    if __name__ == "__main__":
        main()
'''

CHECK = (
    "{i}for result in results:\n"
    "{i}    if isinstance(result, Exception) and not isinstance(result, RolledBackError):\n"
    "{i}        raise result\n"
)

# What the unsafe fix must produce, written by hand.
FIXED_PROGRAM = (
    BAD_PROGRAM
    .replace(
        "    from kazoo.client import KazooClient\n",
        "    from kazoo.client import KazooClient\n    from kazoo.exceptions import RolledBackError\n",
    )
    .replace(
        "        t.commit()\n",
        "        results = t.commit()\n" + CHECK.format(i="        "),
    )
    .replace(
        '        with zk.transaction() as txn:\n'
        '            txn.create(f"{base}/{name}", b"payload")\n'
        '            txn.delete(f"{base}/{name}-ready")\n'
        '            return name\n',
        '        txn = zk.transaction()\n'
        '        aborted = False\n'
        '        try:\n'
        '            txn.create(f"{base}/{name}", b"payload")\n'
        '            txn.delete(f"{base}/{name}-ready")\n'
        '            return name\n'
        '        except BaseException:\n'
        '            aborted = True\n'
        '            raise\n'
        '        finally:\n'
        '            if not aborted:\n'
        '                results = txn.commit()\n' + CHECK.format(i="                "),
    )
    .replace(
        '        with zk.transaction() as txn:\n'
        '            txn.create(f"{base}/{name}", b"payload")\n'
        '            txn.delete(f"{base}/{name}-ready")\n',
        '        txn = zk.transaction()\n'
        '        txn.create(f"{base}/{name}", b"payload")\n'
        '        txn.delete(f"{base}/{name}-ready")\n'
        '        results = txn.commit()\n' + CHECK.format(i="        "),
    )
    .replace(
        '        with zk.transaction() as txn, open(os.devnull, "w") as log:\n'
        '            txn.create(f"{base}/{name}", b"payload")\n'
        '            txn.delete(f"{base}/{name}-ready")\n'
        '            log.write(name)\n',
        '        txn = zk.transaction()\n'
        '        with open(os.devnull, "w") as log:\n'
        '            txn.create(f"{base}/{name}", b"payload")\n'
        '            txn.delete(f"{base}/{name}-ready")\n'
        '            log.write(name)\n'
        '        results = txn.commit()\n' + CHECK.format(i="        "),
    )
)

FORMS = ["commit", "with", "several", "early"]


@pytest.fixture
def programs_bad_and_fixed(programs):
    bad = programs.write(BAD_PROGRAM, "zk501_bad.py")
    fixed = bad.with_name("zk501_fixed.py")
    shutil.copy(bad, fixed)
    result = zklint_fix(fixed, unsafe=True)
    assert result.returncode == 0, (
        f"zklint exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert fixed.read_text() == programs.write(FIXED_PROGRAM, "expected.py").read_text()
    return bad, fixed


def _run(programs, script, hosts, form, base):
    return programs.run(script, hosts, args=[form, base], timeout=60)


@pytest.mark.parametrize("form", FORMS)
def test_failed_transaction_goes_unnoticed(zk_server, zk_observer, zk_path, programs, form):
    bad = programs.write(BAD_PROGRAM, "zk501_bad.py")
    zk_observer.ensure_path(zk_path)

    run = _run(programs, bad, zk_server.hosts, form, zk_path)

    # The program believes it published, exits cleanly ...
    assert run.returncode == 0, run.stderr
    assert "PUBLISHED" in run.stdout
    # ... but the transaction was rolled back: the node was never created.
    assert zk_observer.exists(f"{zk_path}/job") is None


def test_commit_returns_the_errors_instead_of_raising(zk_observer, zk_path):
    """The kazoo fact the rule rests on, seen directly."""
    zk_observer.ensure_path(zk_path)
    t = zk_observer.transaction()
    t.create(f"{zk_path}/job", b"payload")
    t.delete(f"{zk_path}/job-ready")
    results = t.commit()
    assert [type(r).__name__ for r in results] == ["RolledBackError", "NoNodeError"]


@pytest.mark.parametrize("form", FORMS)
def test_fixed_program_raises_the_failed_operations_error(
    zk_server, zk_observer, zk_path, programs, programs_bad_and_fixed, form
):
    _, fixed = programs_bad_and_fixed
    zk_observer.ensure_path(zk_path)

    run = _run(programs, fixed, zk_server.hosts, form, zk_path)

    assert run.returncode != 0, run.stdout
    assert "PUBLISHED" not in run.stdout
    # The error of the operation that failed, not the RolledBackError before it.
    assert run.stderr.rstrip().splitlines()[-1].startswith("kazoo.exceptions.NoNodeError"), run.stderr
    assert zk_observer.exists(f"{zk_path}/job") is None
    with pytest.raises(NoNodeError):
        zk_observer.get(f"{zk_path}/job")


@pytest.mark.parametrize("form", FORMS)
def test_fixed_program_still_publishes_when_the_transaction_succeeds(
    zk_server, zk_observer, zk_path, programs, programs_bad_and_fixed, form
):
    _, fixed = programs_bad_and_fixed
    zk_observer.ensure_path(zk_path)
    zk_observer.create(f"{zk_path}/job-ready")

    run = _run(programs, fixed, zk_server.hosts, form, zk_path)

    assert run.returncode == 0, run.stderr
    assert "PUBLISHED" in run.stdout
    assert zk_observer.get(f"{zk_path}/job")[0] == b"payload"
    assert zk_observer.exists(f"{zk_path}/job-ready") is None
