"""A throwaway standalone ZooKeeper server for integration tests.

Runs `org.apache.zookeeper.server.ZooKeeperServerMain` from the Debian package
`zookeeper` (jars in /usr/share/java) on a free loopback port with its own data
dir, tuned for fast session expiry. The server can be stopped and started again
on the same port and data dir to stage outages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from .support import kill_group, spawn, wait_until

DEBIAN_JAR = Path("/usr/share/java/zookeeper.jar")
# The Debian jar's manifest Class-Path names all its dependencies, so the jar
# alone is a complete classpath. slf4j-simple gives the server a log: the
# package's "/usr/share/java/*" classpath holds several slf4j bindings and
# slf4j picks the no-op one, which would leave us blind when startup fails.
DEBIAN_LOGGER_JAR = Path("/usr/share/java/slf4j-simple.jar")
CLASSPATH_ENV = "ZOOKEEPER_CLASSPATH"
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"

# Fast JVM start-up and a small footprint on a 2-core machine; no hsperfdata
# files in /tmp.
JVM_OPTIONS = [
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Xms16m",
    "-Xmx128m",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
]


class ZooKeeperUnavailable(Exception):
    """java or the ZooKeeper jars are not installed."""


class ZooKeeperStartError(Exception):
    """The server was installed but did not come up; the message has its log."""


def find_java() -> str:
    java = shutil.which("java")
    if not java:
        raise ZooKeeperUnavailable(
            "`java` not found on PATH (apt-get install zookeeper)"
        )
    return java


def find_classpath() -> str:
    """Classpath for the server: $ZOOKEEPER_CLASSPATH, or the Debian jars."""
    override = os.environ.get(CLASSPATH_ENV)
    if override:
        return override
    if not DEBIAN_JAR.is_file():
        raise ZooKeeperUnavailable(
            f"{DEBIAN_JAR} not found (apt-get install zookeeper, or set {CLASSPATH_ENV})"
        )
    jars = [DEBIAN_JAR] + ([DEBIAN_LOGGER_JAR] if DEBIAN_LOGGER_JAR.is_file() else [])
    return os.pathsep.join(map(str, jars))


def free_port() -> int:
    """A loopback port that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def four_letter_word(port: int, command: str, timeout: float = 1.0) -> str | None:
    """Send a four-letter-word command; the reply, or None if unreachable."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(command.encode("ascii"))
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


class ZooKeeperServer:
    """A standalone ZooKeeper process bound to 127.0.0.1.

    With the defaults (tickTime 100 ms, session timeouts clamped to 1-2 s) a
    client with kazoo's default `timeout=10` gets a 2 s session, so expiry
    scenarios take seconds. A client may ask for anything from 1 to 2 s.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        tick_time_ms: int = 100,
        min_session_timeout_ms: int = 1000,
        max_session_timeout_ms: int = 2000,
        startup_timeout: float = 30.0,
    ):
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.config_path = self.base_dir / "zoo.cfg"
        self.log_path = self.base_dir / "zookeeper.log"
        self.tick_time_ms = tick_time_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._starts = 0
        # Resolved now, so a missing installation is reported before any work.
        self._java = find_java()
        self._classpath = find_classpath()

    @property
    def hosts(self) -> str:
        """Connection string for KazooClient(hosts=...)."""
        if self.port is None:
            raise RuntimeError("server was never started")
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "\n".join(
                [
                    f"tickTime={self.tick_time_ms}",
                    f"dataDir={self.data_dir}",
                    f"clientPort={self.port}",
                    "clientPortAddress=127.0.0.1",
                    f"minSessionTimeout={self.min_session_timeout_ms}",
                    f"maxSessionTimeout={self.max_session_timeout_ms}",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=ruok,srvr,stat,mntr",
                    # All test clients share 127.0.0.1: no per-IP limit.
                    "maxClientCnxns=0",
                    # Transactions still reach the OS before the reply, so they
                    # survive the SIGKILL of stop(); only fsync is skipped.
                    "forceSync=no",
                    "",
                ]
            )
        )

    def start(self) -> None:
        """Start the server and wait until it serves requests.

        The first start picks a free port; later starts (after `stop()`) reuse
        the port and the data dir, so clients and sessions can come back.

        Clients that retry while the server restarts can hit a start-up race
        of ZooKeeper 3.8.0: a connection accepted in the few milliseconds
        between the port bind and the database load fails with "ZooKeeperServer
        not running", its close dies on a NullPointerException, and the socket
        stays open with no reply. The client waits out its connect timeout (its
        requested session timeout: 10 s for kazoo's default) before it tries
        again, and by then the server has expired its old session. Seen in a
        few percent of restarts with a client retrying every half second, in
        most with one retrying every few milliseconds; lowering
        zookeeper.nio.sessionlessCnxnTimeout does not release the socket.
        Outage scenarios must allow for it.
        """
        if self.running:
            raise RuntimeError(f"server on port {self.port} is already running")
        first = self.port is None
        # A port picked by free_port() can be taken by another process before
        # the JVM binds it: on the first start only, retry with another port.
        attempts = 3 if first else 1
        for attempt in range(1, attempts + 1):
            if first:
                self.port = free_port()
            try:
                self._start_once()
                return
            except ZooKeeperStartError as error:
                if attempt == attempts or "Address already in use" not in str(error):
                    raise

    def _start_once(self) -> None:
        self._write_config()
        self._starts += 1
        with self.log_path.open("ab") as log:
            log.write(
                f"===== zklint test harness: start #{self._starts} on port {self.port}\n".encode()
            )
            log.flush()
            self._proc = spawn(
                [
                    self._java,
                    *JVM_OPTIONS,
                    "-cp",
                    self._classpath,
                    MAIN_CLASS,
                    str(self.config_path),
                ],
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def serving() -> bool:
            if not self.running:
                raise ZooKeeperStartError(
                    f"ZooKeeper exited with code {self._proc.returncode} during start-up\n"
                    + self.log_tail()
                )
            return self.serving()

        try:
            wait_until(
                serving,
                self.startup_timeout,
                interval=0.05,
                message="ZooKeeper to serve",
            )
        except AssertionError:
            self.stop()
            raise ZooKeeperStartError(
                f"ZooKeeper did not serve on port {self.port} within "
                f"{self.startup_timeout}s\n" + self.log_tail()
            ) from None
        except ZooKeeperStartError:
            self.stop()
            raise

    def serving(self) -> bool:
        """True when the server answers `ruok` with `imok` and serves requests.

        `imok` alone only means the process is up: the listener accepts before
        the database is loaded, and until then `srvr` says "not currently
        serving requests" (and clients are disconnected).
        """
        if self.port is None or four_letter_word(self.port, "ruok") != "imok":
            return False
        return "Mode:" in (four_letter_word(self.port, "srvr") or "")

    def stop(self) -> None:
        """Kill the server (SIGKILL to its process group): an abrupt outage,
        clients see their connections reset at once. Idempotent."""
        if self._proc is not None:
            kill_group(self._proc)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}\n--- end ---"
