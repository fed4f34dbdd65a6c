"""The Geo API given malformed parameters: a 4xx naming the parameter, or accepted;
never a 5xx. Bodies are small; an ack names only a position handed out."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_sync.auth import issue_token, new_secret
from geo_sync.db import write_transaction
from geo_sync.primary.api import MAX_BODY_BYTES
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary.client import url_path
from tests.sites import PrimarySite

# 60 examples per test against a served primary (8 tests x 2 backends): the strategies
# put the inputs that broke int() and the paths up front, so 150 mostly repeated
# classes already seen, at a request each on the suite's shared cores.
FIXTURE = settings(max_examples=60, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])

#: Any text a query string can carry, weighted toward the kinds that broke int():
#: other scripts' digits, signs, separators, huge and endless numbers.
_hostile_values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["١٢٣", "²", "٣", "+5", "-1", " 5", "5 ", "1_000", "0x10", "1e3", "",
                     "9" * 19, "9" * 20, "9" * 5000, str(2**63), str(2**64)]),
    st.builds(lambda a, b: f"{a};{b}", st.sampled_from(["sq1", "pg1", "x"]),
              st.text(alphabet="0123456789:;,\u0661\u00b2", max_size=40)),
    st.builds(lambda d: f"pg1;{d}:{d}:;;0", st.sampled_from(["9" * 19, "9" * 30, "\u0661"])),
)


def _cursor_like(site: PrimarySite) -> str:
    return "pg1" if site.settings.database_url.startswith("postgresql") else "sq1"


def _check(response: httpx.Response, field: str) -> None:
    assert response.status_code < 500, (field, response.status_code, response.text)
    if response.status_code >= 400 and response.status_code != 404:
        assert field in response.json()["message"], (field, response.text)


@FIXTURE
@given(value=_hostile_values,
       field=st.sampled_from(["cursor", "limit", "wait"]))
def test_any_events_parameter_is_refused_naming_it_or_accepted(
    primary: PrimarySite, value: str, field: str
) -> None:
    with primary.client() as client:
        head = client.get("/events/head", headers=primary.headers()).json()["cursor"]
        params = {"cursor": head, field: value}
        _check(client.get("/events", params=params, headers=primary.headers()), field)


@FIXTURE
@given(value=_hostile_values, field=st.sampled_from(["after", "limit", "total"]))
def test_any_catalog_parameter_is_refused_naming_it_or_accepted(
    primary: PrimarySite, value: str, field: str
) -> None:
    with primary.client() as client:
        _check(client.get("/catalog/artifact", params={field: value},
                          headers=primary.headers()), field)


@FIXTURE
@given(value=st.one_of(_hostile_values, st.text(max_size=80)),
       field=st.sampled_from(["path", "cursor", "recompute"]))
def test_any_catalog_item_parameter_is_refused_naming_it_or_accepted(
    primary: PrimarySite, value: str, field: str
) -> None:
    params = {"path": "a.bin", field: value}
    with primary.client() as client:
        _check(client.get("/catalog/artifact/item", params=params,
                          headers=primary.headers()), field)


@FIXTURE
@given(value=st.text(max_size=80), field=st.sampled_from(["type", "path"]))
def test_any_blob_type_or_path_is_refused_naming_it_or_missing(
    primary: PrimarySite, value: str, field: str
) -> None:
    type_name, path = ("artifact", value) if field == "path" else (value, "a.bin")
    url = f"/blobs/{url_path(type_name).replace('/', '%2F') or 'x'}/{url_path(path) or 'x'}"
    with primary.client() as client:
        response = client.get(url, headers=primary.headers())
    assert response.status_code < 500, response.text
    if response.status_code == 400:
        message = response.json()["message"]
        assert field in message or ("type" in message and field == "type"), message


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


@FIXTURE
@given(paths=st.one_of(_json_values, st.lists(st.one_of(_hostile_values, st.text(max_size=80),
                                                         _json_values), max_size=8)),
       type_name=st.sampled_from(["artifact", "job_log"]))
def test_any_blob_batch_paths_are_refused_naming_them_or_answered(
    primary: PrimarySite, paths: object, type_name: str
) -> None:
    with primary.client() as client:
        response = client.post(f"/blob-batch/{type_name}", json={"paths": paths},
                               headers=primary.headers())
    _check(response, "paths")


@FIXTURE
@given(cursor=st.one_of(_hostile_values, st.integers(), st.none(), st.lists(st.integers())))
def test_any_ack_cursor_is_refused_naming_it_or_accepted(
    primary: PrimarySite, cursor: object
) -> None:
    with primary.client() as client:
        response = client.post("/ack", json={"cursor": cursor}, headers=primary.headers())
        status = client.get("/status", headers=primary.headers())
    _check(response, "cursor")
    assert status.status_code == 200, "a refused or accepted ack broke /status"


@pytest.mark.parametrize("depth", [100, 1000, 20000])
def test_deeply_nested_json_is_a_400_or_413_not_a_crash(primary: PrimarySite,
                                                        depth: int) -> None:
    body = "[" * depth + "]" * depth
    with primary.client() as client:
        response = client.post("/ack", content=body, headers={
            **primary.headers(), "content-type": "application/json"})
    assert response.status_code in (400, 413), response.text


def test_a_body_over_the_bound_is_refused_with_413_before_it_is_read(
    primary: PrimarySite,
) -> None:
    big = json.dumps({"cursor": "x" * (MAX_BODY_BYTES + 1)})
    with primary.client() as client:
        declared = client.post("/ack", content=big, headers=primary.headers())

        def chunks() -> object:
            for _ in range(64):
                yield b" " * (1024 * 1024)
        streamed = client.post("/ack", content=chunks(), headers=primary.headers())  # type: ignore[arg-type]
    assert declared.status_code == 413
    assert streamed.status_code == 413


def test_an_ack_beyond_the_head_is_refused_and_status_and_pruning_keep_working(
    primary: PrimarySite,
) -> None:
    with write_transaction(primary.engine) as conn:
        publish(conn, Change("artifact", "created", "a.bin", size=1))
    with primary.client() as client:
        head = client.get("/events/head", headers=primary.headers()).json()["cursor"]
        if head.startswith("sq1"):
            beyond = [f"sq1;{int(head.split(';')[1]) + 1}", "sq1;9223372036854775807"]
        else:
            xmax = int(head.split(";")[1].split(":")[1])
            beyond = [f"pg1;{xmax + 5}:{xmax + 5}:;;0", f"pg1;1:{xmax + 1000}:;;0"]
        for cursor in beyond:
            response = client.post("/ack", json={"cursor": cursor}, headers=primary.headers())
            assert response.status_code == 400, cursor
            assert "cursor" in response.json()["message"]
        assert client.post("/ack", json={"cursor": head},
                           headers=primary.headers()).status_code == 200
        assert client.get("/status", headers=primary.headers()).status_code == 200
    assert primary.cli("primary", "prune").returncode == 0
    assert "Traceback" not in primary.cli("status", check=False).stderr


def test_an_unknown_secondary_learns_only_invalid_credentials(primary: PrimarySite) -> None:
    other = issue_token("s1", new_secret())  # a real name, signed with a wrong secret
    tokens = [issue_token("nobody", new_secret()), issue_token("x" * 500, new_secret()), other]
    with primary.client() as client:
        answers = [client.get("/status", headers={"Authorization": f"Bearer {t}"}).json()
                   for t in tokens]
    assert all(a["message"] == "invalid credentials" for a in answers), answers
    assert not any("nobody" in json.dumps(a) or "s1" in json.dumps(a) for a in answers)


@FIXTURE
@given(value=st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                               max_size=40).map(str.strip),  # HTTP trims them anyway
                       st.builds(lambda a, b: f"bytes={a}-{b}",
                                 st.sampled_from(["", "0", "5", "9" * 30, "-3", "10"]),
                                 st.sampled_from(["", "0", "3", "9" * 30, "1,2-3"]))))
def test_any_range_header_on_a_blob_is_served_or_refused_never_a_5xx(
    primary: PrimarySite, value: str
) -> None:
    full = primary.storage("artifacts") / "ranged.bin"
    if not full.exists():
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(b"0123456789")
    with primary.client() as client:
        response = client.get("/blobs/artifact/ranged.bin",
                              headers={**primary.headers(), "Range": value})
    assert response.status_code < 500, (value, response.status_code)


@FIXTURE
@given(rest=st.text(max_size=60), service=st.one_of(st.none(), st.text(max_size=20)))
def test_any_git_path_or_service_is_refused_or_served_never_a_5xx(
    primary: PrimarySite, rest: str, service: str | None
) -> None:
    params = {} if service is None else {"service": service}
    with primary.client() as client:
        response = client.get(f"/git/{url_path(rest) or 'x'}", params=params,
                              headers=primary.headers())
    assert response.status_code < 500, (rest, service, response.text)
