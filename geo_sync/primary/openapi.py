"""The Geo API described as an OpenAPI 3.0 document, served at ``/api/geo/v1/openapi.json``
and committed as docs/openapi.json (a test keeps the two equal and checks the running
server against it with schemathesis)."""

from __future__ import annotations

from typing import Any

from geo_sync.wire import API_PREFIX, BATCH_INLINE_MAX, BATCH_MAX_PATHS, EVENTS_MAX_LIMIT
from replicators.type_map import REPLICATORS

OPENAPI_PATH = f"{API_PREFIX}/openapi.json"

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


_COMMON_ERRORS = {
    "400": _error("a parameter is malformed; the message names it"),
    "401": _error("no token, a bad or expired token, or a disabled secondary"),
    "404": _error("no such endpoint (error no_such_endpoint: check the URL), or no such "
                  "type or item"),
    "409": _error("this site was demoted (error site_read_only): the X-Geo-New-Primary "
                  "header names the primary now"),
}


def _query(name: str, schema: dict[str, Any], description: str,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


def _type_param(names: list[str]) -> dict[str, Any]:
    return {"name": "type", "in": "path", "required": True,
            "schema": {"type": "string", "enum": names}, "description": "the data type"}


_NULLABLE_STRING = {"type": "string", "nullable": True}
_NULLABLE_INT = {"type": "integer", "nullable": True}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error", "message", "hint"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                       "hint": {"type": "string"}},
    },
    "Event": {
        "type": "object",
        "required": ["id", "type", "event", "record_id", "path", "payload", "created_at"],
        "properties": {
            "id": {"type": "integer"}, "type": {"type": "string"},
            "event": {"type": "string"}, "record_id": {"type": "string"},
            "path": {"type": "string"}, "payload": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "EventPage": {
        "type": "object", "required": ["events", "cursor", "more"],
        "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "cursor": {"type": "string", "description": "pass it to the next request"},
            "more": {"type": "boolean", "description": "more events are ready now"},
        },
    },
    "CatalogItem": {
        "type": "object",
        "required": ["id", "record_id", "path", "size", "checksum", "checksum_at",
                     "updated_at"],
        "properties": {
            "id": {"type": "integer"}, "record_id": {"type": "string"},
            "path": {"type": "string"}, "size": _NULLABLE_INT, "checksum": _NULLABLE_STRING,
            "checksum_at": _NULLABLE_STRING, "updated_at": {"type": "string"},
        },
    },
    "CatalogPage": {
        "type": "object", "required": ["type", "items", "next_after", "total"],
        "properties": {
            "type": {"type": "string"},
            "items": {"type": "array",
                      "items": {"$ref": "#/components/schemas/CatalogItem"}},
            "next_after": _NULLABLE_INT, "total": _NULLABLE_INT,
        },
    },
    "ItemState": {
        "type": "object",
        "required": ["type", "path", "size", "checksum", "checksum_at",
                     "changed_after_cursor"],
        "properties": {
            "type": {"type": "string"}, "path": {"type": "string"}, "size": _NULLABLE_INT,
            "checksum": _NULLABLE_STRING, "checksum_at": _NULLABLE_STRING,
            "changed_after_cursor": {"type": "boolean", "nullable": True},
        },
    },
    "Status": {
        "type": "object",
        "required": ["role", "catalog", "events_retained", "last_event_id", "secondaries"],
        "properties": {
            "role": {"type": "string", "enum": ["primary"]},
            "catalog": {"type": "object", "additionalProperties": {"type": "integer"}},
            "events_retained": {"type": "integer"},
            "last_event_id": _NULLABLE_INT,
            "event_retention_seconds": {"type": "integer"},
            "secondaries": {"type": "array", "items": {"type": "object"}},
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """The whole document, built from the registered data types (type names)."""
    types = sorted(REPLICATORS)
    blob_types = sorted(name for name, cls in REPLICATORS.items()
                        if cls.transport == "blob")
    cursor_param = _query("cursor", {"type": "string"}, "a cursor the feed returned")
    paths: dict[str, Any] = {
        "/events": {"get": {
            "summary": "Events after a cursor; with wait, long-polls until one commits",
            "operationId": "events",
            "parameters": [
                {**cursor_param, "required": True},
                _query("limit", {"type": "integer", "minimum": 1,
                                 "maximum": EVENTS_MAX_LIMIT, "default": 100},
                       "events per page"),
                _query("wait", {"type": "integer", "minimum": 0, "maximum": 60,
                                "default": 0}, "seconds to wait for an event"),
            ],
            "responses": {"200": _json({"$ref": "#/components/schemas/EventPage"}, "a page"),
                          **_COMMON_ERRORS,
                          "410": _error("events after this secondary's cursor were pruned: "
                                        "backfill from the catalog")},
        }},
        "/events/head": {"get": {
            "summary": "The cursor after every committed event",
            "operationId": "eventsHead",
            "parameters": [_query("reset", {"type": "string", "enum": ["0", "1", "true",
                                                                     "false"]},
                                  "1: restart a secondary that must backfill at the head")],
            "responses": {"200": _json({"type": "object", "required": ["cursor"],
                                        "properties": {"cursor": {"type": "string"}}},
                                       "the head cursor"), **_COMMON_ERRORS},
        }},
        "/ack": {"post": {
            "summary": "The secondary applied every event before the cursor",
            "operationId": "ack",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["cursor"],
                "properties": {"cursor": {"type": "string"}}}}}},
            "responses": {"200": _json({"type": "object", "required": ["acknowledged"],
                                        "properties": {"acknowledged": {"type": "string"}}},
                                       "stored"), **_COMMON_ERRORS},
        }},
        "/catalog/{type}": {"get": {
            "summary": "Every existing item of a type, in pages (for backfill)",
            "operationId": "catalog",
            "parameters": [
                _type_param(types),
                _query("after", {"type": "integer", "minimum": 0, "maximum": 2**62,
                                 "default": 0}, "catalog id to continue after"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                 "default": 500}, "items per page"),
                _query("total", {"type": "integer", "minimum": 0, "maximum": 1, "default": 1},
                       "1: count the type's items (total); 0: skip the count, total is null"),
            ],
            "responses": {"200": _json({"$ref": "#/components/schemas/CatalogPage"},
                                       "a page"), **_COMMON_ERRORS},
        }},
        "/catalog/{type}/item": {"get": {
            "summary": "One item's size and checksum on the primary",
            "operationId": "catalogItem",
            "parameters": [
                _type_param(types),
                _query("path", {"type": "string"}, "the item's path", required=True),
                _query("recompute", {"type": "string", "enum": ["0", "1", "true", "false"]},
                       "1: re-take the checksum on disk first"),
                cursor_param,
            ],
            "responses": {"200": _json({"$ref": "#/components/schemas/ItemState"}, "found"),
                          **_COMMON_ERRORS,
                          "404": _error("not in the catalog (X-Geo-Missing-On-Primary)")},
        }},
        "/blobs/{type}/{path}": {"get": {
            "summary": "An artifact's or job log's bytes (Range supported)",
            "operationId": "blob",
            "parameters": [
                _type_param(blob_types),
                {"name": "path", "in": "path", "required": True,
                 "schema": {"type": "string"}, "description": "the item's path"},
            ],
            "responses": {
                "200": {"description": "the bytes, with X-Geo-Size and "
                        "X-Geo-Checksum-Sha256", "content": {"application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}}}},
                "206": {"description": "the requested range",
                        "content": {"application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}}}},
                **_COMMON_ERRORS,
                "404": _error("missing on primary (X-Geo-Missing-On-Primary: true)"),
                "416": {"description": "nothing past the requested start"},
            },
        }},
        "/blob-batch/{type}": {"post": {
            "summary": "Many artifacts' or job logs' bytes in one response",
            "description": "For each path, in the order asked: one line of JSON (path, "
            "status ok|missing|too_large, size, the catalog's sha256 checksum when it "
            "describes these bytes, record_id), then, if ok, exactly size bytes. Files "
            f"over {BATCH_INLINE_MAX} bytes are too_large: fetch them from /blobs.",
            "operationId": "blobBatch",
            "parameters": [_type_param(blob_types)],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["paths"],
                "properties": {"paths": {"type": "array", "minItems": 1,
                                         "maxItems": BATCH_MAX_PATHS,
                                         "items": {"type": "string"}}}}}}},
            "responses": {
                "200": {"description": "the entries", "content": {
                    "application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"}}}},
                **_COMMON_ERRORS,
                "413": _error("the body is over 1 MiB"),
            },
        }},
        "/status": {"get": {
            "summary": "Catalog counts, the event log and the secondaries' health",
            "operationId": "status",
            "responses": {"200": _json({"$ref": "#/components/schemas/Status"}, "status"),
                          "401": _COMMON_ERRORS["401"]},
        }},
        "/maintenance": {"post": {
            "summary": "Turn maintenance mode on or off: publishes and pushes are refused, "
                       "reads go on (a planned promotion drives this)",
            "operationId": "maintenance",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["on"],
                "properties": {"on": {"type": "boolean"},
                               "reason": {"type": "string", "maxLength": 500,
                                          "nullable": True}}}}}},
            "responses": {"200": _json({"type": "object"}, "the site's state"),
                          **_COMMON_ERRORS, "413": _error("body over 80 KiB")},
        }},
        "/fence": {"post": {
            "summary": "Demote this site in favour of a promoted one: it takes no writes "
                       "again and names the new primary (an epoch not above the site's "
                       "own is refused with 400: only a site promoted over it fences it)",
            "operationId": "fence",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["new_primary_url"],
                "properties": {"new_primary_url": {"type": "string",
                                                   "pattern": "^https?://[!-~]+$"},
                               "epoch": {"type": "integer", "minimum": 1,
                                         "nullable": True}}}}}},
            "responses": {"200": _json({"type": "object"}, "the epoch before, and the "
                                       "site's state now"),
                          **_COMMON_ERRORS, "413": _error("body over 80 KiB")},
        }},
        "/openapi.json": {"get": {
            "summary": "This document (no token needed)",
            "operationId": "openapi",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
        }},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "geo-sync Geo API",
            "version": "1",
            "description": "What a primary serves its secondaries. Git repositories are "
            "served over git's smart HTTP at /git/{repository}.git/ (upload-pack only), "
            "which is git's protocol and not described here.",
        },
        "servers": [{"url": API_PREFIX}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "HS256 with the secondary's secret; sub = its name, aud = "
                "geo-sync-primary, at most 5 minutes of lifetime",
            }},
            "schemas": _SCHEMAS,
        },
        "paths": paths,
    }
