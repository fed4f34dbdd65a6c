"""The proxying half of our Toxiproxy-compatible server: links (a client connection and
its upstream connection, pumped both ways) and the toxics applied to them, as
Toxiproxy documents each one. tests/faults/proxy_server.py is the HTTP API."""

from __future__ import annotations

import contextlib
import json
import random
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

VERSION = "2.9.0-geo-sync"
CHUNK = 32 * 1024
POLL = 0.02
TOXIC_ATTRIBUTES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "limit_data": {"bytes": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "http_error": {"status_code": 503},
}


class ApiError(Exception):
    """Raised for a request Toxiproxy would refuse; carries its status and message."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity, "attributes": dict(self.attributes)}


def _toxic_from(body: dict[str, Any], existing: Toxic | None = None) -> Toxic:
    kind = body.get("type", existing.type if existing else None)
    if kind not in TOXIC_ATTRIBUTES:
        raise ApiError("invalid toxic type", 400)
    stream = body.get("stream", existing.stream if existing else "downstream")
    if stream not in ("upstream", "downstream"):
        raise ApiError("stream was invalid, can be either upstream or downstream", 400)
    toxicity = float(body.get("toxicity", existing.toxicity if existing else 1.0))
    if not 0.0 <= toxicity <= 1.0:
        raise ApiError("toxicity must be between 0 and 1", 400)
    attributes = dict(existing.attributes if existing else TOXIC_ATTRIBUTES[kind])
    for key, value in (body.get("attributes") or {}).items():
        if key in TOXIC_ATTRIBUTES[kind]:
            attributes[key] = int(value)
    name = body.get("name") or (existing.name if existing else f"{kind}_{stream}")
    return Toxic(str(name), kind, stream, toxicity, attributes)


class _Closed(Exception):
    """Raised inside a pump when the link has been closed under it."""


@dataclass(eq=False)
class Link:
    """One client connection and its upstream connection, pumped both ways."""

    proxy: Proxy
    client: socket.socket
    server: socket.socket
    closed: threading.Event = field(default_factory=threading.Event)
    # Per-connection draw of each toxic's toxicity, and each toxic's per-link state.
    applies: dict[int, bool] = field(default_factory=dict)
    state: dict[int, dict[str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for stream, src, dst in (("upstream", self.client, self.server),
                                 ("downstream", self.server, self.client)):
            threading.Thread(target=self._pump, args=(stream, src, dst), daemon=True,
                             name=f"{self.proxy.name}-{stream}").start()

    def close(self, reset: bool = False) -> None:
        with self.lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for sock in (self.client, self.server):
            try:
                if reset:  # SO_LINGER 0: close() sends RST and drops unsent data
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.proxy.forget(self)

    def _toxics(self, stream: str) -> list[tuple[Toxic, dict[str, float]]]:
        active = []
        for toxic in self.proxy.toxics_for(stream):
            key = id(toxic)
            if key not in self.applies:
                self.applies[key] = random.random() < toxic.toxicity
                self.state[key] = {"since": time.monotonic()}
            if self.applies[key]:
                active.append((toxic, self.state[key]))
        return active

    def _pump(self, stream: str, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                toxics = self._toxics(stream)
                self._check_timers(toxics)
                if any(t.type == "reset_peer" and "data_at" in s for t, s in toxics):
                    self._sleep(POLL)  # armed: like Toxiproxy, read nothing until the reset
                    continue
                try:
                    ready, _, _ = select.select([src], [], [], POLL)
                except (OSError, ValueError):
                    break
                if not ready:
                    continue
                try:
                    data = src.recv(CHUNK)
                except OSError:
                    break
                if not data:
                    break
                self._forward(data, time.monotonic(), self._toxics(stream), dst)
        except _Closed:
            return
        self.close()

    def _check_timers(self, toxics: list[tuple[Toxic, dict[str, float]]]) -> None:
        now = time.monotonic()
        for toxic, state in toxics:
            if toxic.type == "timeout" and toxic.attributes["timeout"] > 0 and \
                    now - state["since"] >= toxic.attributes["timeout"] / 1000:
                self.close()
                raise _Closed
            if toxic.type == "reset_peer" and "data_at" in state and \
                    now - state["data_at"] >= toxic.attributes["timeout"] / 1000:
                self.close(reset=True)
                raise _Closed

    def _forward(self, data: bytes, arrived: float,
                 toxics: list[tuple[Toxic, dict[str, float]]], dst: socket.socket) -> None:
        pieces = [data]
        for toxic, state in toxics:
            attrs = toxic.attributes
            if toxic.type == "http_error":
                self._answer_http_error(attrs["status_code"])
            if toxic.type == "timeout":
                return  # the data is dropped on the floor until the toxic goes
            if toxic.type == "reset_peer":
                state.setdefault("data_at", time.monotonic())
                self._check_timers(toxics)
                return
            if toxic.type == "latency":
                jitter = attrs["jitter"]
                delay = attrs["latency"] + (random.randint(-jitter, jitter)
                                            if jitter > 0 else 0)
                self._sleep(arrived + delay / 1000 - time.monotonic())
            elif toxic.type == "slicer":
                pieces = [p for piece in pieces for p in _slices(piece, attrs)]
                state["slice_delay"] = attrs["delay"] / 1e6
            elif toxic.type == "bandwidth" and attrs["rate"] > 0:
                step = attrs["rate"] * 100  # bytes per 100 ms, as Toxiproxy splits
                pieces = [p[i:i + step] for p in pieces for i in range(0, len(p), step)]
                state["rate"] = attrs["rate"]
            elif toxic.type == "limit_data":
                left = attrs["bytes"] - int(state.get("sent", 0))
                kept, total = [], 0
                for piece in pieces:
                    kept.append(piece[:max(0, left - total)])
                    total += len(kept[-1])
                pieces = [p for p in kept if p]
                state["sent"] = state.get("sent", 0) + total
        self._send(pieces, toxics, dst)
        for toxic, state in toxics:
            if toxic.type == "limit_data" and state.get("sent", 0) >= toxic.attributes["bytes"]:
                self.close()
                raise _Closed

    def _send(self, pieces: list[bytes], toxics: list[tuple[Toxic, dict[str, float]]],
              dst: socket.socket) -> None:
        rate = next((s["rate"] for t, s in toxics if t.type == "bandwidth" and "rate" in s), 0)
        gap = next((s["slice_delay"] for t, s in toxics if t.type == "slicer"), 0.0)
        for piece in pieces:
            if rate:
                self._sleep(len(piece) / (rate * 1000))
            try:
                dst.sendall(piece)
            except OSError:
                raise _Closed from None
            if gap:
                self._sleep(gap)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.closed.wait(seconds):
            raise _Closed

    def _answer_http_error(self, status: int) -> None:
        body = json.dumps({"detail": f"{status} injected by the fault proxy"}).encode()
        head = (f"HTTP/1.1 {status} Injected Fault\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        with contextlib.suppress(OSError):
            self.client.sendall(head + body)
        self.close()
        raise _Closed


def _slices(data: bytes, attrs: dict[str, int]) -> list[bytes]:
    average, variation = max(1, attrs["average_size"]), attrs["size_variation"]
    out, start = [], 0
    while start < len(data):
        size = max(1, average + (random.randint(-variation, variation)
                                 if variation > 0 else 0))
        out.append(data[start:start + size])
        start += size
    return out


class Proxy:
    """A named listener forwarding to ``upstream`` through its toxics."""

    def __init__(self, name: str, listen: str, upstream: str) -> None:
        self.name, self.listen, self.upstream = name, listen, upstream
        self.enabled = False
        self.toxics: list[Toxic] = []
        self.links: set[Link] = set()
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "toxics": [t.to_json() for t in self.toxics]}

    def toxics_for(self, stream: str) -> list[Toxic]:
        with self._lock:
            return [t for t in self.toxics if t.stream == stream]

    def forget(self, link: Link) -> None:
        with self._lock:
            self.links.discard(link)

    def start(self) -> None:
        if self.enabled:
            return
        host, port = self.listen.rsplit(":", 1)
        listener = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except OSError as exc:
            listener.close()
            raise ApiError(f"listen {self.listen}: {exc.strerror}", 500) from None
        listener.listen(128)
        self.listen = f"{host}:{listener.getsockname()[1]}"
        self._listener = listener
        self.enabled = True
        threading.Thread(target=self._accept, args=(listener,), daemon=True,
                         name=f"{self.name}-accept").start()

    def stop(self) -> None:
        """Stop listening and drop every connection, as a disabled Toxiproxy proxy does."""
        if not self.enabled:
            return
        self.enabled = False
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            links = list(self.links)
        for link in links:
            link.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            host, port = self.upstream.rsplit(":", 1)
            try:
                server = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = Link(self, client, server)
            with self._lock:
                if listener is not self._listener:
                    client.close()
                    server.close()
                    return
                self.links.add(link)
            link.start()

    def update(self, body: dict[str, Any]) -> None:
        listen, upstream = body.get("listen", self.listen), body.get("upstream", self.upstream)
        restart = listen != self.listen or upstream != self.upstream
        enabled = bool(body.get("enabled", self.enabled))
        if restart or not enabled:
            self.stop()
        self.listen, self.upstream = listen, upstream
        if enabled:
            self.start()

    def add_toxic(self, body: dict[str, Any]) -> Toxic:
        toxic = _toxic_from(body)
        with self._lock:
            if any(t.name == toxic.name for t in self.toxics):
                raise ApiError("toxic already exists", 409)
            self.toxics.append(toxic)
        return toxic

    def toxic(self, name: str) -> Toxic:
        for toxic in self.toxics:
            if toxic.name == name:
                return toxic
        raise ApiError("toxic not found", 404)

    def update_toxic(self, name: str, body: dict[str, Any]) -> Toxic:
        old = self.toxic(name)
        new = _toxic_from({**body, "name": name, "type": old.type}, old)
        with self._lock:
            self.toxics[self.toxics.index(old)] = new
        return new

    def remove_toxic(self, name: str) -> None:
        toxic = self.toxic(name)
        with self._lock:
            self.toxics.remove(toxic)

    def reset(self) -> None:
        with self._lock:
            self.toxics.clear()
        self.start()
