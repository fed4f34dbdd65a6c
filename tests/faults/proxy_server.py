"""A Toxiproxy-compatible server of our own, for machines without the Toxiproxy binary.

It speaks Toxiproxy 2's HTTP API (the same endpoints, JSON shapes, status codes and
error bodies) so toxiproxy-python, toxiproxy-cli or curl drive it as they would the
real one, and it implements the toxics the fault matrix uses, as Toxiproxy documents
them: ``latency`` (latency +/- jitter, ms), ``bandwidth`` (rate, KB/s of 1000 bytes),
``timeout`` (drop data, close after timeout ms; never with 0), ``reset_peer`` (TCP RST
timeout ms after data arrives), ``limit_data`` (close after bytes), ``slicer``
(average_size +/- size_variation bytes, delay µs apart), and ``enabled: false`` (stop
listening, drop every connection). ``toxicity`` is the chance a toxic applies to a
connection, drawn once per connection; ``stream`` picks the direction (``upstream`` is
client to server, ``downstream``, the default, server to client).

One extension, not in Toxiproxy: ``http_error`` (attribute ``status_code``, default
503) answers every HTTP request on an affected connection itself, with that status
and ``Connection: close``, instead of passing it upstream: a primary answering 5xx.

Run it as ``python -m tests.faults.proxy_server --port 8474 [--config proxies.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.faults.proxy_links import VERSION, ApiError, Proxy


class Registry:
    """All proxies by name, behind one lock."""

    def __init__(self) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.lock = threading.Lock()

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError("proxy not found", 404)
        return proxy

    def create(self, body: dict[str, Any]) -> Proxy:
        for key in ("name", "upstream"):
            if not body.get(key):
                raise ApiError(f"missing required field: {key}", 400)
        with self.lock:
            if body["name"] in self.proxies:
                raise ApiError("proxy already exists", 409)
            proxy = Proxy(body["name"], body.get("listen") or "127.0.0.1:0", body["upstream"])
            if body.get("enabled", True):
                proxy.start()
            self.proxies[proxy.name] = proxy
        return proxy

    def delete(self, name: str) -> None:
        with self.lock:
            proxy = self.get(name)
            del self.proxies[name]
        proxy.stop()

    def populate(self, bodies: list[dict[str, Any]]) -> list[Proxy]:
        made = []
        for body in bodies:
            existing = self.proxies.get(body.get("name", ""))
            if existing and (existing.upstream != body.get("upstream")
                             or existing.listen != body.get("listen", existing.listen)):
                self.delete(existing.name)
                existing = None
            made.append(existing or self.create(body))
        return made


class _Handler(BaseHTTPRequestHandler):
    registry: Registry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiError(f"bad request body: {exc}", 400) from None

    def _reply(self, status: int, payload: Any = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        registry = self.registry
        try:
            body = self._body() if method in ("POST", "PATCH") else {}
            match method, parts:
                case "GET", ["version"]:
                    self._reply(200, {"version": VERSION})
                case "POST", ["reset"]:
                    for proxy in list(registry.proxies.values()):
                        proxy.reset()
                    self._reply(204)
                case "GET", ["proxies"]:
                    self._reply(200, {n: p.to_json() for n, p in registry.proxies.items()})
                case "POST", ["proxies"]:
                    self._reply(201, registry.create(body).to_json())
                case "POST", ["populate"]:
                    if not isinstance(body, list):
                        raise ApiError("bad request body: expected a list of proxies", 400)
                    made = registry.populate(body)
                    self._reply(201, {"proxies": [p.to_json() for p in made]})
                case "GET", ["proxies", name]:
                    self._reply(200, registry.get(name).to_json())
                case "POST" | "PATCH", ["proxies", name]:
                    proxy = registry.get(name)
                    proxy.update(body)
                    self._reply(200, proxy.to_json())
                case "DELETE", ["proxies", name]:
                    registry.delete(name)
                    self._reply(204)
                case "GET", ["proxies", name, "toxics"]:
                    self._reply(200, [t.to_json() for t in registry.get(name).toxics])
                case "POST", ["proxies", name, "toxics"]:
                    self._reply(200, registry.get(name).add_toxic(body).to_json())
                case "GET", ["proxies", name, "toxics", toxic]:
                    self._reply(200, registry.get(name).toxic(toxic).to_json())
                case "POST" | "PATCH", ["proxies", name, "toxics", toxic]:
                    self._reply(200, registry.get(name).update_toxic(toxic, body).to_json())
                case "DELETE", ["proxies", name, "toxics", toxic]:
                    registry.get(name).remove_toxic(toxic)
                    self._reply(204)
                case _:
                    self._reply(404, {"error": "404 page not found", "status": 404})
        except ApiError as exc:
            self._reply(exc.status, {"error": str(exc), "status": exc.status})
        except (TypeError, ValueError, KeyError) as exc:
            self._reply(400, {"error": f"bad request body: {exc}", "status": 400})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


def serve(host: str, port: int, config: str | None = None) -> ThreadingHTTPServer:
    """Start the API on ``host:port`` in a thread; return the server (its port is bound)."""
    registry = Registry()
    if config:
        with open(config) as handle:
            registry.populate(json.load(handle))
    handler = type("Handler", (_Handler,), {"registry": registry})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="api").start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8474)
    parser.add_argument("--config", help="a JSON list of proxies to create at start")
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, args.config)
    print(json.dumps({"msg": "fault proxy API listening",
                      "port": server.server_address[1]}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
