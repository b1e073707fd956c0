"""A small service registry, written the way these things often are.

`zklint check examples/` points at the ZooKeeper hazards in it; `zklint check --diff
examples/` shows the fixes.
"""
import logging
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry

log = logging.getLogger(__name__)


class ServiceRegistry:
    def __init__(self, hosts, name, address):
        self.zk = KazooClient(hosts=hosts, connection_retry=KazooRetry(max_tries=3, delay=1))
        self.path = f"/services/{name}"
        self.address = address

    def on_state(self, state):
        if state == KazooState.SUSPENDED:
            log.warning("connection suspended")
        elif state == KazooState.CONNECTED:
            self.zk.exists(self.path)

    def register(self):
        self.zk.start()
        self.zk.add_listener(self.on_state)
        try:
            self.zk.create(self.path, self.address, ephemeral=True, makepath=True)
        except NodeExistsError:
            log.info("already registered")

    def watch_peers(self):
        def on_change(event):
            time.sleep(5)
            log.info("peers changed: %s", event)

        return self.zk.get_children("/services", watch=on_change)


def main():
    registry = ServiceRegistry("127.0.0.1:2181", "api", b"10.0.0.7:8080")
    registry.register()
    print(registry.watch_peers())


def publish_config(hosts, data):
    zk = KazooClient(hosts=hosts)
    zk.ensure_path("/config")
    zk.set("/config", data)
    zk.stop()


if __name__ == "__main__":
    main()
