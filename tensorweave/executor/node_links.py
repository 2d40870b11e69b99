"""Messages between tasks of one node over Unix sockets, instead of Ray actor calls.

Every ``_Send`` to another task used to be one actor call. Ray's call costs both sides several
hundred microseconds of CPU (serialization, its task bookkeeping, threads handing the call
over): Deep MNIST's data-parallel step sends six values each way, and with two workers on two
cores that CPU time comes out of the step (DESIGN.md, "Transfers between tasks"). A message on
a connected Unix socket costs tens of microseconds.

Each task listens on a socket of its own (Linux's abstract namespace: nothing on disk) and
makes up a secret; the Session's client learns both through Ray and tells each task the
addresses and secrets of the other tasks on its node. A sender connects once per peer and
opens with the peer's secret; the listener drops a connection that does not. Messages are
length-prefixed pickles, read by one thread per connection and handed to ``handle``. A sender
whose connection fails drops it and reports False: the caller sends through Ray instead.

The Session's client calls its own node's tasks the same way (``step_links.py``): what
``handle`` returns for a message, unless None, is written back on the connection as the reply,
which ``Link.receive`` reads.
"""

from __future__ import annotations

import hmac
import pickle
import secrets
import socket
import struct
import sys
import threading

__all__ = ["Listener", "Link"]

_LENGTH = struct.Struct("!Q")


class Listener:
    """Accepts connections from this node's tasks and clients; ``handle(message)`` runs for
    each message on the connection's reader thread, and what it returns (unless None) goes
    back on the connection."""

    def __init__(self, handle):
        self.handle = handle
        self.secret = secrets.token_bytes(32)
        self.address = None
        self._sock = None
        if not sys.platform.startswith("linux"):
            return  # no abstract socket namespace: messages go through Ray
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = "\0tensorweave-" + secrets.token_hex(12)
        try:
            sock.bind(address)
            sock.listen(16)
        except OSError:
            sock.close()
            return
        self._sock, self.address = sock, address
        threading.Thread(target=self._accept, args=(sock,), name="tensorweave-links",
                         daemon=True).start()

    def _accept(self, sock):
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._read, args=(conn,), name="tensorweave-link",
                             daemon=True).start()

    def _read(self, conn):
        with conn:
            try:
                if not hmac.compare_digest(_read_frame(conn), self.secret):
                    return
                while True:
                    message = pickle.loads(_read_frame(conn))
                    try:
                        reply = self.handle(message)
                    except Exception:  # noqa: BLE001 - one bad delivery must not end the link
                        continue  # (its receive then fails by its deadline or the step's abort)
                    if reply is not None:
                        _write_frame(conn, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
            except (OSError, EOFError):
                return  # the sender closed its end

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Link:
    """A connection to one peer's listener."""

    def __init__(self, address: str, secret: bytes):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(address)
        self._lock = threading.Lock()
        _write_frame(self._sock, secret)

    def send(self, message) -> bool:
        """Whether ``message`` was written whole (False: the link is broken; drop it)."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self._lock:
                _write_frame(self._sock, data)
        except OSError:
            self.close()
            return False
        return True

    def receive(self, timeout: float):
        """The next reply on this link, waiting at most ``timeout`` seconds. Raises OSError or
        EOFError (the link is then closed: a reply half read or still due would be taken for
        the next one)."""
        try:
            self._sock.settimeout(max(timeout, 1e-3))
            try:
                data = _read_frame(self._sock)
            finally:
                self._sock.settimeout(None)
        except (OSError, EOFError):
            self.close()
            raise
        return pickle.loads(data)

    def fileno(self) -> int:
        """For ``selectors``: readable when a reply arrived or the link closed."""
        return self._sock.fileno()

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass


def _write_frame(sock, data: bytes):
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _read_frame(sock) -> bytes:
    (length,) = _LENGTH.unpack(_read_exactly(sock, _LENGTH.size))
    return _read_exactly(sock, length)


def _read_exactly(sock, n: int) -> bytes:
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        count = sock.recv_into(view[got:], n - got)
        if count == 0:
            raise EOFError("the connection closed")
        got += count
    return bytes(buffer)
