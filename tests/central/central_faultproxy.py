"""A fault-injecting TCP proxy on loopback for the end-to-end sync test.

Each accepted connection gets one fate, drawn from a seeded generator:

* ``drop``   - closed before a byte is read (the client sees a reset / remote disconnect);
* ``reset``  - the request reaches central, the reply is cut after a few bytes and the
  socket is reset (SO_LINGER 0): central stored the batch, the device never heard;
* ``stall``  - the request reaches central, the reply is held past the client's timeout;
* ``delay``  - the reply is held a little, within the timeout (slow network);
* ``pass``   - bytes flow untouched.

Only loopback addresses are used; the proxy stops when ``close()`` is called.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import threading
from collections import Counter

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int = 0,
        p_drop: float = 0.08,
        p_reset: float = 0.08,
        p_stall: float = 0.05,
        p_delay: float = 0.05,
        stall_s: float = 3.0,
        delay_s: float = 0.3,
    ) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.random = random.Random(seed)
        self.weights = [("drop", p_drop), ("reset", p_reset), ("stall", p_stall), ("delay", p_delay)]
        self.stall_s, self.delay_s = stall_s, delay_s
        self.counts: Counter[str] = Counter()
        self.enabled = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _fate(self) -> str:
        with self._lock:
            if not self.enabled:
                return "pass"
            roll = self.random.random()
            for name, p in self.weights:
                if roll < p:
                    return name
                roll -= p
            return "pass"

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()

    def _handle(self, client: socket.socket) -> None:
        fate = self._fate()
        if fate == "drop":
            self._count("drop")
            self._reset(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            self._count("upstream_down")
            self._reset(client)
            return
        cut_after = self.random.randint(1, 120) if fate == "reset" else None
        held = False
        sent_back = 0
        try:
            sockets = [client, upstream]
            while not self._stop.is_set():
                readable, _, _ = select.select(sockets, [], [], 0.2)
                if not readable:
                    continue
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        upstream.sendall(data)
                        continue
                    # bytes from central to the device: where the faults bite
                    if fate in ("stall", "delay") and not held:
                        held = True
                        self._count(fate)
                        self._stop.wait(self.stall_s if fate == "stall" else self.delay_s)
                        if fate == "stall":
                            return
                    if cut_after is not None and sent_back + len(data) >= cut_after:
                        client.sendall(data[: max(cut_after - sent_back, 0)])
                        self._count("reset")
                        self._reset(client)
                        return
                    client.sendall(data)
                    sent_back += len(data)
        except OSError:
            self._count("socket_error")
        finally:
            for sock in (client, upstream):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=2)
