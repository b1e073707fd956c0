"""A loopback TCP proxy between kazoo clients and a ZooKeeper server that can
lose one reply.

ZooKeeper's client protocol is a stream of frames, each a 4-byte big-endian
length and a body. The first frame each way is the connect request/response;
every later request body starts with `xid:int32, type:int32` and every reply
body with `xid:int32, zxid:int64, err:int32`.

When armed, the proxy lets the next request of the given types (by default the
creates) through to the server, waits for the server's reply to it, swallows
that reply and drops the connection (both sockets). The server has then done
the operation, but the client only sees its connection break: kazoo fails the
pending request with ConnectionLoss and reconnects (same session) through the
proxy. The swallowed reply is recorded, so a test knows what the server did.

Threads only, everything on 127.0.0.1, and a bounded lifetime: the proxy closes
itself after `lifetime` seconds if the test has not closed it before.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

OP_CREATE = 1
OP_CREATE2 = 15
CREATE_OPS = frozenset({OP_CREATE, OP_CREATE2})


@dataclass(frozen=True)
class LostReply:
    """The reply the proxy swallowed: to request `xid` of type `op`."""

    xid: int
    op: int
    zxid: int
    err: int  # 0: the server did the operation
    path: str | None  # for a successful create: the node the server made


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        try:
            chunk = sock.recv(size)
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """(raw frame, body) or None at EOF or error."""
    header = _recv_exact(sock, 4)
    if header is None:
        return None
    (length,) = struct.unpack(">i", header)
    body = _recv_exact(sock, length) if length > 0 else b""
    if body is None:
        return None
    return header + body, body


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
    except OSError:
        pass
    sock.close()


class _Connection:
    def __init__(self, proxy: LostReplyProxy, client: socket.socket, server: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.drop_xid: int | None = None
        self.drop_op: int | None = None
        self._closed = threading.Event()
        self.threads = [
            threading.Thread(target=self._client_to_server, daemon=True, name="proxy-c2s"),
            threading.Thread(target=self._server_to_client, daemon=True, name="proxy-s2c"),
        ]
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            _close(self.client)
            _close(self.server)

    def _client_to_server(self) -> None:
        first = True
        try:
            while (frame := _read_frame(self.client)) is not None:
                raw, body = frame
                if not first and len(body) >= 8:
                    xid, op = struct.unpack(">ii", body[:8])
                    if self.proxy._take_arm(op):
                        # Set before the request leaves: its reply cannot come first.
                        self.drop_op = op
                        self.drop_xid = xid
                first = False
                self.server.sendall(raw)
        except OSError:
            pass
        finally:
            self.close()

    def _server_to_client(self) -> None:
        first = True
        try:
            while (frame := _read_frame(self.server)) is not None:
                raw, body = frame
                if not first and self.drop_xid is not None and len(body) >= 16:
                    xid, zxid, err = struct.unpack(">iqi", body[:16])
                    if xid == self.drop_xid:
                        self.proxy._record(LostReply(xid, self.drop_op, zxid, err, _created_path(body, err)))
                        return  # finally: drop the connection, the reply undelivered
                first = False
                self.client.sendall(raw)
        except OSError:
            pass
        finally:
            self.close()


def _created_path(body: bytes, err: int) -> str | None:
    """The path a successful create/create2 reply names (its first field)."""
    if err != 0 or len(body) < 20:
        return None
    (length,) = struct.unpack(">i", body[16:20])
    return body[20:20 + length].decode("utf-8", "replace") if length >= 0 else None


class LostReplyProxy:
    """Proxy 127.0.0.1:<port> -> 127.0.0.1:`upstream_port`. Use `hosts` as the
    client's connection string, `arm()` before the operation whose reply must
    be lost, `lost` (an Event) and `lost_reply` to see what happened, and
    `close()` in teardown (also a context manager)."""

    def __init__(self, upstream_port: int, lifetime: float = 60.0):
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._deadline = time.monotonic() + lifetime
        self._lock = threading.Lock()
        self._armed_ops: frozenset[int] | None = None
        self._stopped = threading.Event()
        self._connections: list[_Connection] = []
        self.accepted = 0
        self.lost = threading.Event()
        self.lost_reply: LostReply | None = None
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept")
        self._acceptor.start()

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def arm(self, ops: frozenset[int] = CREATE_OPS) -> None:
        """Lose the reply of the next request whose type is in `ops` (once)."""
        with self._lock:
            self.lost.clear()
            self.lost_reply = None
            self._armed_ops = frozenset(ops)

    def _take_arm(self, op: int) -> bool:
        with self._lock:
            if self._armed_ops is not None and op in self._armed_ops:
                self._armed_ops = None
                return True
            return False

    def _record(self, reply: LostReply) -> None:
        with self._lock:
            self.lost_reply = reply
        self.lost.set()

    def _accept_loop(self) -> None:
        try:
            while not self._stopped.is_set() and time.monotonic() < self._deadline:
                try:
                    client, _ = self._listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    break
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                    server.settimeout(None)
                except OSError:
                    _close(client)  # like a refused connection
                    continue
                client.settimeout(None)
                for sock in (client, server):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with self._lock:
                    self.accepted += 1
                    if self._stopped.is_set():
                        _close(client)
                        _close(server)
                        break
                    self._connections.append(_Connection(self, client, server))
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            self._stopped.set()
            connections = list(self._connections)
        try:
            self._listener.close()
        except OSError:
            pass
        for connection in connections:
            connection.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, drop every connection, join the threads."""
        self._stopped.set()
        self._acceptor.join(timeout)
        self._shutdown()
        for connection in list(self._connections):
            for thread in connection.threads:
                thread.join(timeout)

    def __enter__(self) -> LostReplyProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
