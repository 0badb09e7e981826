"""A TCP proxy on loopback that mistreats connections on purpose: delays them, resets
them before the request reaches the server, or lets the request through and then drops
the response (the server did the work; the client never hears of it)."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter

FAULTS = ("pass", "delay", "reset_before", "drop_response")


def reset(sock: socket.socket) -> None:
    """Make the coming close() send a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class FaultProxy:
    def __init__(self, upstream_port: int, *, seed: int, weights: dict[str, float]) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.weights = weights
        self.injected: Counter[str] = Counter()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def _pick(self) -> str:
        with self._lock:
            fault = self._random.choices(FAULTS, [self.weights.get(f, 0) for f in FAULTS])[0]
            self.injected[fault] += 1
            return fault

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, self._pick()), daemon=True).start()

    def _serve(self, client: socket.socket, fault: str) -> None:
        with client:
            if fault == "reset_before":
                reset(client)
                return
            if fault == "delay":
                time.sleep(0.2)  # the fault itself: a slow network
            with socket.create_connection(self.upstream) as server:
                request = self._read_request(client)
                server.sendall(request)
                response = self._read_all(server)
                if fault == "drop_response":
                    reset(client)
                    return
                client.sendall(response)

    @staticmethod
    def _read_request(sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    @staticmethod
    def _read_all(sock: socket.socket) -> bytes:
        """The whole response: the client asked for Connection: close."""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
