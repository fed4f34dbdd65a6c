"""Our Toxiproxy-compatible server, driven through toxiproxy-python and its HTTP API, does
what Toxiproxy documents, observed on real sockets. (Bounds on time are lower bounds:
a toxic that delays must delay at least that long; nothing asserts a speed.)"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import httpx
import pytest
from toxiproxy import Toxiproxy
from toxiproxy.exceptions import NotFound, ProxyExists
from toxiproxy.proxy import Proxy

from tests.faults.toxiproxy_api import ToxiproxyApi

Handler = Callable[[socket.socket], None]


@contextmanager
def upstream(handler: Handler) -> Iterator[str]:
    """A real TCP server on a free port running ``handler`` per connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_serve, args=(handler, conn), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def _serve(handler: Handler, conn: socket.socket) -> None:
    with conn, suppress(OSError):
        handler(conn)


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def blast(size: int, hold: bool = False) -> Handler:
    """Wait for one byte, then send ``size`` bytes and close (or, with ``hold``, wait for
    the client to close first)."""
    def handler(conn: socket.socket) -> None:
        conn.recv(1)
        conn.sendall(bytes(i % 251 for i in range(size)))
        while hold and conn.recv(1):
            pass
    return handler


def address(proxy: Proxy) -> tuple[str, int]:
    host, port = proxy.listen.rsplit(":", 1)
    return ("127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host), int(port)


def fetch(proxy: Proxy, timeout: float = 10.0) -> tuple[bytes, list[int]]:
    """Ask the blasting upstream for its bytes; return them and each recv's size."""
    with socket.create_connection(address(proxy), timeout=timeout) as sock:
        sock.sendall(b"x")
        data, sizes = b"", []
        while chunk := sock.recv(65536):
            data += chunk
            sizes.append(len(chunk))
    return data, sizes


def round_trip(proxy: Proxy, payload: bytes = b"ping") -> float:
    with socket.create_connection(address(proxy), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += sock.recv(65536)
        assert got == payload
        return time.monotonic() - start


@pytest.fixture
def echo_proxy(toxiproxy: Toxiproxy) -> Iterator[Proxy]:
    with upstream(echo) as target:
        yield toxiproxy.create(upstream=target, name="echo_test")


# -- the API -------------------------------------------------------------------------


def test_a_proxy_is_created_listed_shown_and_deleted_as_toxiproxy_does(
        toxiproxy: Toxiproxy, toxiproxy_server: ToxiproxyApi) -> None:
    with upstream(echo) as target:
        proxy = toxiproxy.create(upstream=target, name="api_test")
        assert proxy.enabled is True
        assert not proxy.listen.endswith(":0"), "port 0 is replaced by the port picked"
        assert round_trip(proxy) >= 0
        shown = httpx.get(f"{toxiproxy_server.url}/proxies/api_test").json()
        assert shown == {"name": "api_test", "listen": proxy.listen, "upstream": target,
                         "enabled": True, "toxics": []}
        assert "api_test" in toxiproxy.proxies()
        with pytest.raises(ProxyExists):
            toxiproxy.create(upstream=target, name="api_test")
        proxy.destroy()
        assert "api_test" not in toxiproxy.proxies()


def test_unknown_proxies_and_toxics_answer_404_with_toxiproxys_error_body(
        toxiproxy_server: ToxiproxyApi, echo_proxy: Proxy) -> None:
    missing = httpx.get(f"{toxiproxy_server.url}/proxies/no_such_proxy")
    assert missing.status_code == 404
    assert missing.json() == {"error": "proxy not found", "status": 404}
    toxic = httpx.get(f"{toxiproxy_server.url}/proxies/echo_test/toxics/nope")
    assert toxic.json() == {"error": "toxic not found", "status": 404}
    with pytest.raises(NotFound):
        echo_proxy.destroy_toxic("nope")


def test_a_bad_toxic_is_refused_with_400(toxiproxy_server: ToxiproxyApi,
                                         echo_proxy: Proxy) -> None:
    url = f"{toxiproxy_server.url}/proxies/echo_test/toxics"
    assert httpx.post(url, json={"type": "no_such_toxic"}).status_code == 400
    assert httpx.post(url, json={"type": "latency", "stream": "sideways"}).status_code == 400


def test_a_toxic_gets_toxiproxys_defaults_and_can_be_updated(
        toxiproxy_server: ToxiproxyApi, echo_proxy: Proxy) -> None:
    echo_proxy.add_toxic(type="latency", attributes={"latency": 10})
    toxic = echo_proxy.get_toxic("latency_downstream")
    assert toxic is not None
    assert (toxic.stream, toxic.toxicity, toxic.attributes) == (
        "downstream", 1.0, {"latency": 10, "jitter": 0})
    url = f"{toxiproxy_server.url}/proxies/echo_test/toxics/latency_downstream"
    updated = httpx.post(url, json={"attributes": {"jitter": 5}}).json()
    assert updated["attributes"] == {"latency": 10, "jitter": 5}
    assert httpx.delete(url).status_code == 204
    assert echo_proxy.toxics() == {}


def test_reset_removes_every_toxic_and_enables_every_proxy(
        toxiproxy: Toxiproxy, echo_proxy: Proxy) -> None:
    echo_proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    echo_proxy.disable()
    assert toxiproxy.reset()
    proxy = toxiproxy.get_proxy("echo_test")
    assert proxy.enabled and proxy.toxics() == {}
    assert round_trip(proxy) >= 0


def test_populate_creates_missing_proxies_and_keeps_matching_ones(
        toxiproxy_server: ToxiproxyApi, echo_proxy: Proxy) -> None:
    body = [{"name": "echo_test", "listen": echo_proxy.listen,
             "upstream": echo_proxy.upstream},
            {"name": "populated_test", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}]
    answer = httpx.post(f"{toxiproxy_server.url}/populate", json=body)
    assert answer.status_code == 201
    assert [p["name"] for p in answer.json()["proxies"]] == ["echo_test", "populated_test"]
    assert answer.json()["proxies"][0]["listen"] == echo_proxy.listen, "left untouched"
    httpx.delete(f"{toxiproxy_server.url}/proxies/populated_test")


def test_version_is_json(toxiproxy_server: ToxiproxyApi) -> None:
    assert "version" in httpx.get(f"{toxiproxy_server.url}/version").json()


# -- the toxics, on real sockets ------------------------------------------------------


def test_latency_delays_each_direction_by_at_least_latency_minus_jitter(
        echo_proxy: Proxy) -> None:
    echo_proxy.add_toxic(type="latency", attributes={"latency": 300, "jitter": 100})
    assert round_trip(echo_proxy) >= 0.2
    echo_proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 300})
    assert round_trip(echo_proxy) >= 0.5, "both directions delay"


def test_bandwidth_limits_the_rate_in_kilobytes_per_second(toxiproxy: Toxiproxy) -> None:
    with upstream(blast(60_000)) as target:
        proxy = toxiproxy.create(upstream=target, name="bandwidth_test")
        proxy.add_toxic(type="bandwidth", attributes={"rate": 30})  # 30,000 bytes/s
        start = time.monotonic()
        data, _ = fetch(proxy)
        assert len(data) == 60_000
        assert time.monotonic() - start >= 1.8


def test_timeout_drops_the_data_and_closes_after_the_timeout(echo_proxy: Proxy) -> None:
    echo_proxy.add_toxic(type="timeout", attributes={"timeout": 300})
    start = time.monotonic()
    with socket.create_connection(address(echo_proxy), timeout=10) as sock:
        sock.sendall(b"echo me")
        assert sock.recv(100) == b"", "no byte gets through, then the connection closes"
    assert time.monotonic() - start >= 0.3


def test_timeout_zero_holds_the_connection_open_without_data(toxiproxy: Toxiproxy) -> None:
    with upstream(blast(1000, hold=True)) as target:
        proxy = toxiproxy.create(upstream=target, name="stall_test")
        proxy.add_toxic(type="timeout", attributes={"timeout": 0})
        with pytest.raises(TimeoutError):
            fetch(proxy, timeout=1.0)
        proxy.destroy_toxic("timeout_downstream")
        with socket.create_connection(address(proxy), timeout=10) as sock:
            sock.sendall(b"x")
            got = b""
            while len(got) < 1000:
                got += sock.recv(65536)
        assert len(got) == 1000, "a new connection passes once the toxic is gone"


def test_reset_peer_resets_the_connection(toxiproxy: Toxiproxy) -> None:
    with upstream(blast(100_000, hold=True)) as target:
        proxy = toxiproxy.create(upstream=target, name="reset_test")
        proxy.add_toxic(type="reset_peer", attributes={"timeout": 100})
        with pytest.raises(ConnectionResetError):
            fetch(proxy)


def test_limit_data_closes_after_that_many_bytes(toxiproxy: Toxiproxy) -> None:
    with upstream(blast(100_000)) as target:
        proxy = toxiproxy.create(upstream=target, name="limit_test")
        proxy.add_toxic(type="limit_data", attributes={"bytes": 12_345})
        data, _ = fetch(proxy)
        assert data == bytes(i % 251 for i in range(12_345))


def test_limit_data_upstream_limits_what_the_server_receives(toxiproxy: Toxiproxy) -> None:
    received = []

    def count(conn: socket.socket) -> None:
        total = 0
        while chunk := conn.recv(65536):
            total += len(chunk)
        received.append(total)

    with upstream(count) as target:
        proxy = toxiproxy.create(upstream=target, name="limit_up_test")
        proxy.add_toxic(type="limit_data", stream="upstream", attributes={"bytes": 1000})
        with socket.create_connection(address(proxy), timeout=10) as sock:
            with suppress(OSError):
                sock.sendall(b"y" * 5000)
            sock.recv(1)
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received == [1000]


def test_slicer_delivers_the_same_bytes_in_small_delayed_pieces(toxiproxy: Toxiproxy) -> None:
    with upstream(blast(1000)) as target:
        proxy = toxiproxy.create(upstream=target, name="slicer_test")
        proxy.add_toxic(type="slicer", attributes={"average_size": 100, "size_variation": 20,
                                                   "delay": 50_000})
        data, sizes = fetch(proxy)
        assert data == bytes(i % 251 for i in range(1000))
        assert len(sizes) >= 3, f"arrived in {sizes}"


def test_a_toxic_with_toxicity_zero_affects_no_connection(toxiproxy: Toxiproxy) -> None:
    with upstream(blast(5000)) as target:
        proxy = toxiproxy.create(upstream=target, name="toxicity_test")
        proxy.add_toxic(type="limit_data", toxicity=0.0, attributes={"bytes": 10})
        assert len(fetch(proxy)[0]) == 5000


def test_a_disabled_proxy_refuses_connections_and_drops_open_ones(echo_proxy: Proxy) -> None:
    with socket.create_connection(address(echo_proxy), timeout=10) as open_one:
        open_one.sendall(b"a")
        assert open_one.recv(1) == b"a"
        with echo_proxy.down():
            with suppress(ConnectionResetError):
                assert open_one.recv(1) == b"", "the open connection is closed"
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address(echo_proxy), timeout=5)
    assert round_trip(echo_proxy) >= 0, "enabled again, it passes"


def test_a_toxic_added_to_an_open_connection_takes_effect_on_it(echo_proxy: Proxy) -> None:
    with socket.create_connection(address(echo_proxy), timeout=10) as sock:
        sock.sendall(b"a")
        assert sock.recv(1) == b"a"
        echo_proxy.add_toxic(type="limit_data", attributes={"bytes": 3})
        sock.sendall(b"bcdef")
        got = b""
        while chunk := sock.recv(10):
            got += chunk
        assert got == b"bcd"


def test_the_http_error_extension_answers_requests_itself(
        toxiproxy_server: ToxiproxyApi, toxiproxy: Toxiproxy) -> None:
    if not toxiproxy_server.ours:
        pytest.skip("http_error is our extension; a real Toxiproxy has no such toxic")
    with upstream(echo) as target:
        proxy = toxiproxy.create(upstream=target, name="http_error_test")
        proxy.add_toxic(type="http_error", stream="upstream", attributes={"status_code": 503})
        host, port = address(proxy)
        assert httpx.get(f"http://{host}:{port}/anything").status_code == 503


@pytest.mark.parametrize("seed", range(8))
def test_benign_toxics_never_change_the_bytes(echo_proxy: Proxy, seed: int) -> None:
    """Classes of input: payload sizes and slicer/latency/bandwidth settings drawn at
    random (seeded, so a failure names its case)."""
    rng = random.Random(seed)
    payload = rng.randbytes(rng.randint(1, 20_000))
    average = rng.randint(1, 4096)
    echo_proxy.add_toxic(type="slicer", attributes={
        "average_size": average, "size_variation": rng.randint(0, average - 1)})
    echo_proxy.add_toxic(type="latency", stream="upstream",
                         attributes={"latency": 5, "jitter": rng.randint(0, 5)})
    echo_proxy.add_toxic(type="bandwidth", attributes={"rate": rng.randint(50, 10_000)})
    assert round_trip(echo_proxy, payload) >= 0
