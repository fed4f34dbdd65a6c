"""Every answer a primary URL can give maps to one error that names itself once: a real
HTTP server answers with generated status codes and bodies (Geo API error bodies, HTML
from a proxy, garbage), and the client's error must fit the class of answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_sync.errors import AuthError, BackfillRequired, GeoSyncError, TransientError
from geo_sync.secondary.client import PrimaryClient
from geo_sync.settings import SecondarySettings

ANSWER: dict[str, object] = {}


class _Scripted(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = bytes(ANSWER["body"])  # type: ignore[arg-type]
        self.send_response(int(ANSWER["status"]))  # type: ignore[call-overload]
        self.send_header("Content-Type", str(ANSWER["type"]))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()


geo_bodies = st.builds(
    lambda code, message, hint: json.dumps(
        {"error": code, "message": message, "hint": hint}).encode(),
    st.sampled_from(["unauthorized", "not_found", "invalid_request", "internal"]),
    st.text(max_size=60), st.text(max_size=60))
foreign_bodies = st.one_of(
    st.binary(max_size=200),
    st.just(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    st.just(b"Not Found"),
    st.builds(lambda v: json.dumps(v).encode(),
              st.dictionaries(st.sampled_from(["detail", "msg", "status"]), st.text(max_size=20))))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.sampled_from([400, 401, 403, 404, 405, 410, 413, 429, 500, 502, 503, 504]),
       geo=st.booleans(), data=st.data())
def test_every_error_answer_maps_to_one_error_of_its_class(
        server: str, tmp_path: Path, status: int, geo: bool, data: st.DataObject) -> None:
    body = data.draw(geo_bodies if geo else foreign_bodies)
    ANSWER.update(status=status, body=body,
                  type="application/json" if geo else "text/html; charset=utf-8")
    client = PrimaryClient(SecondarySettings(
        name="east", secret="k" * 40, primary_url=server,
        database_url=f"sqlite:///{tmp_path / 't.db'}", mirror_root=tmp_path))
    try:
        with pytest.raises(GeoSyncError) as caught:
            client.status()
    finally:
        client.close()
    error = caught.value
    text = str(error)
    if geo:  # the primary's own words are quoted as they came: judge only ours
        sent = json.loads(body)
        for quoted in (sent.get("message"), sent.get("hint")):
            if isinstance(quoted, str) and quoted:
                text = text.replace(quoted, "")
    # It answered: whatever the answer, it is never called unreachable.
    assert "unreachable" not in text
    assert text.count("primary answered") + text.count("refused our credentials") <= 1
    if not geo:
        assert "\n" not in error.message, "a foreign body must stay on one line"
    if geo and status == 401:
        assert isinstance(error, AuthError)
    elif geo and status == 410:
        assert isinstance(error, BackfillRequired)
    elif status >= 500 or status == 429:
        assert isinstance(error, TransientError)
    elif not geo and status == 404:
        assert "no Geo API at that URL" in error.message and "primary_url" in error.hint
    if not geo:
        assert error.hint, "an answer from something else than the Geo API needs a hint"
