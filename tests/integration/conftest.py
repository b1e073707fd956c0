"""Fixtures for the real-ZooKeeper integration tests.

Servers:
  zk_server          the shared server of the session (function-scoped handle).
                     Read/write znodes under `zk_path`; never stop it.
  zk_server_private  a server of the test's own, for outages: stop()/start().

Clients and programs:
  zk_path            a unique znode path for the test (not created).
  zk_clients         factory: zk_clients(hosts, **kwargs) -> started KazooClient.
  zk_observer        a started KazooClient on `zk_server`.
  programs           ProgramRunner: write/start/run scenario programs.

Plain helpers (wait_until, assert_stays, zklint_fix, Program) live in
`support.py`. Without java or the ZooKeeper jars the tests are skipped, unless
CI=true: CI must prove the behaviour, so there they fail.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from .support import ProgramRunner
from .zkserver import ZooKeeperServer, ZooKeeperStartError, ZooKeeperUnavailable

HERE = Path(__file__).resolve().parent
ZNODE_ROOT = "/zklint-it"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs a real ZooKeeper server (java + zookeeper jars)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: mark before `-m` selection runs in the same hook.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _new_server(base_dir: Path) -> ZooKeeperServer:
    """Start a server, or skip/fail the requesting test with the reason."""
    try:
        server = ZooKeeperServer(base_dir)
        server.start()
        return server
    except ZooKeeperUnavailable as error:
        reason, missing = f"ZooKeeper unavailable: {error}", True
    except ZooKeeperStartError as error:
        reason, missing = f"ZooKeeper failed to start: {error}", False
    # Outside the `except` blocks, so pytest reports the reason alone. Only a
    # missing installation outside CI skips: when java and the jars are there,
    # a server that does not start is a broken setup or harness.
    if missing and not _in_ci():
        pytest.skip(reason)
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def _zk_shared_server(tmp_path_factory: pytest.TempPathFactory):
    server = _new_server(tmp_path_factory.mktemp("zk-shared"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk_server(_zk_shared_server: ZooKeeperServer):
    """The session's shared server. Tests must not stop it (use
    `zk_server_private`); if one does, it is restarted and the test errors."""
    yield _zk_shared_server
    if not _zk_shared_server.running:
        _zk_shared_server.start()
        pytest.fail(
            "the test stopped the shared `zk_server`; use `zk_server_private` "
            "for outage scenarios",
            pytrace=False,
        )


@pytest.fixture
def zk_server_private(tmp_path_factory: pytest.TempPathFactory):
    """A server owned by this test (may be stopped and started), killed after."""
    server = _new_server(tmp_path_factory.mktemp("zk-private"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk_path(request: pytest.FixtureRequest) -> str:
    """A znode path no other test uses: /zklint-it/<test name>-<random>.
    Not created; create it with makepath=True or ensure_path()."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    return f"{ZNODE_ROOT}/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def zk_clients():
    """Factory for started KazooClients, stopped and closed after the test.

    `zk_clients(hosts, **kwargs)` passes kwargs to KazooClient.
    """
    clients: list[KazooClient] = []

    def make(hosts: str, **kwargs) -> KazooClient:
        client = KazooClient(hosts=hosts, **kwargs)
        client.start(timeout=15)  # on failure it stops and closes itself
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.stop()
        client.close()


@pytest.fixture
def zk_observer(zk_server: ZooKeeperServer, zk_clients):
    """A started client on the shared server, to watch what programs do."""
    return zk_clients(zk_server.hosts)


@pytest.fixture
def programs(tmp_path: Path):
    """ProgramRunner in the test's temp dir; kills leftover programs after."""
    runner = ProgramRunner(tmp_path)
    try:
        yield runner
    finally:
        runner.cleanup()
