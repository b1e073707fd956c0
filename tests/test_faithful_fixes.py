"""What the faithful fixes promise beyond their fixtures' exact output: the message of a
client meant to outlive its function names process exit, a `connected`-guarded stop is
reported as skipped while SUSPENDED, and no fix starts a client a factory hands on."""

from __future__ import annotations

import textwrap

from zklint.engine import lint_source
from zklint.fixer import fix_source
from zklint.rules import all_rules
from zklint.source import SourceFile


def _findings(code: str, rule: str):
    return lint_source(SourceFile(textwrap.dedent(code), "t.py"), [all_rules()[rule]], {})


def _fixed(code: str, rule: str) -> str:
    rules = [all_rules()[rule]]
    source = SourceFile(textwrap.dedent(code), "t.py")
    return fix_source(source, lambda s: lint_source(s, rules, {}), lambda f: True).text


REGISTER = """
    from kazoo.client import KazooClient

    def register(host, value):
        zk = KazooClient(hosts=host)
        zk.start()
        zk.create("/services/api", value, ephemeral=True, makepath=True)
"""


def test_client_meant_to_outlive_its_function_leaks_at_process_exit():
    [finding] = _findings(REGISTER, "ZK201")
    assert "process exit" in finding.message and "an ephemeral node" in finding.message
    fixed = _fixed(REGISTER, "ZK201")
    assert "atexit.register(zk.stop)" in fixed and "finally" not in fixed


def test_the_same_function_stopping_its_client_gets_a_finally():
    code = REGISTER + "        zk.stop()\n"
    [finding] = _findings(code, "ZK201")
    assert "happy path" in finding.message
    assert "finally:" in _fixed(code, "ZK201")


def test_stop_behind_connected_is_not_a_stop():
    code = """
        from kazoo.client import KazooClient

        def publish(host, data):
            zk = KazooClient(hosts=host)
            zk.start()
            try:
                zk.set("/app", data)
            finally:
                if zk.connected:
                    zk.stop()
                    zk.close()
    """
    [finding] = _findings(code, "ZK201")
    assert "SUSPENDED" in finding.message
    fixed = _fixed(code, "ZK201")
    assert "connected" not in fixed and "    finally:\n        zk.stop()\n        zk.close()\n" in fixed


def test_factory_adding_credentials_is_not_started():
    code = """
        from kazoo.client import KazooClient

        def make_client(hosts):
            zk = KazooClient(hosts=hosts)
            zk.add_auth("digest", "app:secret")
            return zk
    """
    fixed = _fixed(code, "ZK203")
    assert ".start()" not in fixed
    assert 'KazooClient(hosts=hosts, auth_data=[("digest", "app:secret")])' in fixed
