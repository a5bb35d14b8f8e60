"""The OpenAPI 3.1 description of the HTTP timeline service (:mod:`targets.service.app`), written as data."""

from __future__ import annotations

from typing import Any

from targets.ids import MAX_POST_ID, MAX_USER_ID
from targets.service import routes


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "malformed request (non-integer id or parameter, bad JSON, missing body)",
        404: "unknown user",
        413: "request body or post text too large",
        422: "well-formed but invalid (page size outside 1..1000, following oneself)",
        503: "a store does not answer",
    }
    return {str(s): _json(_ref("Error"), reasons[s]) for s in statuses}


#: User ids are Postgres bigints; post ids fit a JSON number exactly (53 bits).
_ID = {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_USER_ID}
_USER = {"name": "user_id", "in": "path", "required": True, "schema": _ID}
_OTHER = {"name": "other_id", "in": "path", "required": True, "schema": _ID}
#: The parameters of a page read (home timeline or user timeline).
_PAGE = [
    _USER,
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {
        "name": "before",
        "in": "query",
        "description": "exclusive upper bound: the next_before of the previous page",
        "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_POST_ID + 1},
    },
]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "fanout-bench timeline service",
        "version": "0.1.0",
        "description": "Home timelines (push, pull or hybrid) over Redis and PostgreSQL, for load tests.",
    },
    "paths": {
        routes.TIMELINE: {
            "get": {
                "summary": "A home-timeline page, newest first",
                "parameters": _PAGE,
                "responses": {"200": _json(_ref("Timeline"), "the page"), **_errors(400, 404, 422, 503)},
            }
        },
        routes.POSTS: {
            "get": {
                "summary": "A page of the account's own posts (its user timeline), newest first",
                "parameters": _PAGE,
                "responses": {"200": _json(_ref("Timeline"), "the page"), **_errors(400, 404, 422, 503)},
            },
            "post": {
                "summary": "Publish a post",
                "description": (
                    "With an Idempotency-Key header a retry (after a 503, a timeout) stores nothing new: it answers"
                    " with the post stored the first time, Idempotent-Replayed: true, and delivers it again. A 503"
                    " after the post was stored names the post."
                ),
                "parameters": [
                    _USER,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "a key unique to this post, e.g. a UUID (scoped to the author)",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["body"],
                                "properties": {
                                    "body": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 2000,
                                        "description": "The post's text. An @<user id> in it mentions that user, who"
                                        " gets the post in their home timeline too (followers or not).",
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": {
                        **_json(_ref("Published"), "stored and delivered"),
                        "headers": {
                            "Idempotent-Replayed": {
                                "description": "true when this answers a retry: nothing new was stored",
                                "schema": {"const": "true"},
                            }
                        },
                    },
                    **_errors(400, 404, 413, 503),
                },
            },
        },
        routes.FOLLOWING: {
            "put": {
                "summary": "Follow (idempotent)",
                "parameters": [_USER, _OTHER],
                "responses": {"200": _json(_ref("FollowChange"), "done"), **_errors(400, 404, 422, 503)},
            },
            "delete": {
                "summary": "Unfollow (idempotent)",
                "parameters": [_USER, _OTHER],
                "responses": {"200": _json(_ref("FollowChange"), "done"), **_errors(400, 404, 422, 503)},
            },
        },
        routes.SAMPLE: {
            "get": {
                "summary": "User ids with follower and followee counts from the loaded graph (for load generators)",
                "parameters": [
                    {"name": "n", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100000}},
                    {"name": "top", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000}},
                    {
                        "name": "seed",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "format": "int64",
                            "minimum": -MAX_USER_ID - 1,
                            "maximum": MAX_USER_ID,
                        },
                    },
                ],
                "responses": {"200": _json(_ref("Sample"), "the sample"), **_errors(400, 503)},
            }
        },
        routes.HEALTHZ: {
            "get": {
                "summary": "Both stores answer and the in-process fan-out worker delivers; what is served",
                "responses": {
                    "200": _json(_ref("Health"), "ok"),
                    "503": _json(
                        {"anyOf": [_ref("Health"), _ref("Error")]},
                        "degraded: the in-process fan-out worker is reconnecting to a store, stopped or failed (posts"
                        " are accepted but not delivered meanwhile); or a store does not answer (an Error body)",
                    ),
                },
            }
        },
        routes.METRICS: {
            "get": {
                "summary": "Counters, write amplification, latency percentiles and Redis memory (all processes)",
                "responses": {"200": _json(_ref("Metrics"), "the metrics")},
            },
            "delete": {"summary": "Reset the metrics", "responses": {"200": _json({"type": "object"}, "reset")}},
        },
        routes.OPENAPI: {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "status"],
                "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
            },
            "Post": {
                "type": "object",
                "required": ["id", "author_id", "created_at", "body"],
                "properties": {
                    "id": {"type": "integer", "description": "time-ordered, below 2**53"},
                    "author_id": {"type": "integer"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "body": {"type": "string"},
                },
            },
            "Timeline": {
                "type": "object",
                "required": ["user_id", "posts", "next_before"],
                "properties": {
                    "user_id": {"type": "integer"},
                    "posts": {"type": "array", "items": _ref("Post")},
                    "next_before": {"type": ["integer", "null"]},
                },
            },
            "Published": {
                "allOf": [
                    _ref("Post"),
                    {
                        "type": "object",
                        "required": ["entries_written"],
                        "properties": {"entries_written": {"type": "integer", "minimum": 0}},
                    },
                ]
            },
            "FollowChange": {
                "type": "object",
                "required": ["follower", "followee", "following", "changed"],
                "properties": {
                    "follower": {"type": "integer"},
                    "followee": {"type": "integer"},
                    "following": {"type": "boolean"},
                    "changed": {"type": "boolean"},
                },
            },
            "Sample": {
                "type": "object",
                "required": ["total", "users", "followers", "followees", "top"],
                "properties": {
                    "total": {"type": "integer"},
                    "users": {"type": "array", "items": {"type": "integer"}},
                    "followers": {"type": "array", "items": {"type": "integer"}},
                    "followees": {"type": "array", "items": {"type": "integer"}},
                    "top": {"type": "array", "items": {"type": "object"}},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status", "strategy"],
                "properties": {
                    "status": {"enum": ["ok", "degraded"]},
                    "strategy": {"type": "string", "description": "push, pull, hybrid, or the service's own name"},
                    "worker": {
                        "type": "object",
                        "description": "the in-process fan-out worker (async fan-out with a worker in the service)",
                        "required": ["state", "reconnects"],
                        "properties": {
                            "state": {"enum": ["starting", "running", "reconnecting", "stopped", "failed"]},
                            "reconnects": {"type": "integer", "minimum": 0},
                            "failure": {"type": "string"},
                        },
                    },
                    "fanout": {"enum": ["sync", "async", "none"], "description": "how posts reach timelines"},
                    "namespace": {
                        "type": "object",
                        "description": (
                            "a fanout serve's key prefix and schema and the server instances holding them (Redis"
                            " run_id, PostgreSQL database@start time): fanout bench --target checks the oracle and"
                            " undoes its posts only when they are its own; other services leave it out"
                        ),
                        "required": ["prefix", "schema", "redis", "postgres"],
                        "properties": {k: {"type": "string"} for k in ("prefix", "schema", "redis", "postgres")},
                    },
                },
            },
            "Metrics": {
                "type": "object",
                "required": ["strategy", "counters", "write_amplification", "latency", "redis_memory"],
                "properties": {
                    "strategy": {"type": "string"},
                    "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "write_amplification": {"type": ["number", "null"]},
                    "latency": {"type": "object"},
                    "delivery_lag": {"type": "object"},
                    "redis_memory": {"type": "object"},
                },
            },
        }
    },
}
