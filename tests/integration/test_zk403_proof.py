"""Proof of ZK403 retry-subclass-ignored.

kazoo keeps a connection_retry/command_retry only when it is a dict or an object
whose type is exactly KazooRetry. An instance of a subclass is dropped without a
word: the client runs its default policy, and none of the subclass's code (its
`__call__`, its `copy`) ever runs. The command-retry half needs no server
(`client.retry` runs the policy in the caller's thread); the connection half
starts a client on the real server. The unsafe fix for a settings-only subclass
(`.copy()`, an exact KazooRetry with the same settings) is run against the real
server: both configured policies are then the ones kazoo uses.
"""

from __future__ import annotations

import textwrap

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss
from kazoo.retry import KazooRetry, RetryFailedError

from zklint.engine import lint_source
from zklint.rules import all_rules
from zklint.source import SourceFile


class RecordingRetry(KazooRetry):
    """A policy subclass that records every time kazoo uses it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used = []

    def __call__(self, func, *args, **kwargs):
        self.used.append("__call__")
        return super().__call__(func, *args, **kwargs)

    def copy(self):
        self.used.append("copy")
        return super().copy()


def _flaky(failures: int):
    """A callable raising ConnectionLoss `failures` times, then returning "ok"."""
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionLoss()
        return "ok"

    call.calls = calls
    return call


def test_rule_reports_the_code_under_proof():
    code = textwrap.dedent(
        """\
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry


        class RecordingRetry(KazooRetry):
            pass


        zk = KazooClient(hosts="zk:2181", command_retry=RecordingRetry(max_tries=1))
        """
    )
    findings = lint_source(SourceFile(code, "proof.py"), [all_rules()["ZK403"]], {})
    assert [(f.code, f.line) for f in findings] == [("ZK403", 9)]


def test_exact_kazoo_retry_is_honoured():
    """Control: the same settings as an exact KazooRetry give up after one try."""
    client = KazooClient(hosts="127.0.0.1:1", command_retry=KazooRetry(max_tries=1))
    flaky = _flaky(failures=1)
    with pytest.raises(RetryFailedError):
        client.retry(flaky)
    assert len(flaky.calls) == 1


def test_command_retry_subclass_never_runs():
    policy = RecordingRetry(max_tries=1)
    client = KazooClient(hosts="127.0.0.1:1", command_retry=policy)  # noqa: ZK403 (the hazard under test)
    flaky = _flaky(failures=1)

    # With the subclass's policy (one try) this would raise RetryFailedError;
    # kazoo's default policy retried instead, and the subclass was never used.
    assert client.retry(flaky) == "ok"
    assert len(flaky.calls) == 2
    assert policy.used == []

    # The policy itself works when called: it is only kazoo that ignores it.
    with pytest.raises(RetryFailedError):
        policy(_flaky(failures=1))
    assert policy.used == ["__call__"]


def test_connection_retry_subclass_never_runs(zk_server, zk_clients):
    policy = RecordingRetry(max_tries=-1, delay=0.2)
    client = zk_clients(zk_server.hosts, connection_retry=policy)

    assert client.connected
    assert client.exists("/") is not None
    # kazoo connected through its own default policy: the subclass's copy()
    # (which kazoo calls on an accepted policy) and __call__ never ran.
    assert policy.used == []
    # What kazoo kept instead (private attributes, kazoo 2.11): its own default.
    assert client._conn_retry is not policy and type(client._conn_retry) is KazooRetry
    assert client._conn_retry.max_tries is None and client._conn_retry.delay == 0.1


# A settings-only subclass (only __init__): the unsafe fix hands kazoo an exact
# KazooRetry with the same settings (`.copy()`), so the configured policy runs.
SETTINGS_PROGRAM = textwrap.dedent(
    """\
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry


    class OneTry(KazooRetry):
        def __init__(self):
            super().__init__(max_tries=1)


    class Patient(KazooRetry):
        def __init__(self):
            super().__init__(max_tries=-1, delay=0.2)


    def build(hosts):
        return KazooClient(hosts=hosts, command_retry=OneTry(), connection_retry=Patient())
    """
)


def test_fixed_settings_subclass_is_honoured(zk_server):
    from zklint.fixer import fix_source

    rules = [all_rules()["ZK403"]]
    outcome = fix_source(SourceFile(SETTINGS_PROGRAM, "proof.py"), lambda s: lint_source(s, rules, {}), lambda f: True)
    assert outcome.errors == [] and outcome.remaining == []
    assert outcome.text == SETTINGS_PROGRAM.replace("OneTry()", "OneTry().copy()").replace(
        "Patient()", "Patient().copy()"
    )
    namespace: dict = {}
    exec(compile(outcome.text, "proof_fixed.py", "exec"), namespace)
    client = namespace["build"](zk_server.hosts)
    try:
        client.start(timeout=15)
        assert client.exists("/") is not None
        # The configured one-try command policy now runs: a single ConnectionLoss fails.
        flaky = _flaky(failures=1)
        with pytest.raises(RetryFailedError):
            client.retry(flaky)
        assert len(flaky.calls) == 1
        # ... and the connection policy kazoo kept is the configured one.
        assert type(client._conn_retry) is KazooRetry and client._conn_retry.delay == 0.2
    finally:
        client.stop()
        client.close()
