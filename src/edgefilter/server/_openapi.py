"""The OpenAPI 3.1 description of the reference Sites API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any, Final

from .._asn import MAX_ASN
from .._rules import _SCALAR_FIELDS, SITE_FLAGS, SITE_TYPES

# The fields of the server's answers, in the order it writes them (Rybbit's order). Their
# values come from the site row's column of the same attribute name (``_SCALAR_FIELDS``).
CREATE_FLAGS: Final = ("public", "saltUserIds", "blockBots")  # the flags a create may set
CREATED_FIELDS: Final = (
    "siteId",
    "id",
    "domain",
    "name",
    "organizationId",
    "createdBy",
    *CREATE_FLAGS,
)
SITE_FIELDS: Final = (
    "id",
    "siteId",
    "name",
    "domain",
    "createdAt",
    "updatedAt",
    "createdBy",
    "organizationId",
    *SITE_FLAGS,
    "type",
)
CONFIG_FLAGS: Final = tuple(SITE_FLAGS)
CONFIG_SCALARS: Final = (*CONFIG_FLAGS, "type")  # the config answer's fields besides lists
# Each rule list's read endpoint, by API field, in Rybbit's spelling.
LIST_READS: Final = {
    "excludedIPs": "excluded-ips",
    "excludedCountries": "excluded-countries",
    "excludedPaths": "excluded-paths",
    "excludedHostnames": "excluded-hostnames",
    "excludedUserAgents": "excluded-user-agents",
    "excludedASNs": "excluded-asns",
}
# Rybbit v2.7's pattern lists: the longest entry after trimming, and the 400's error text.
PATTERN_LISTS: Final = {
    "excludedPaths": (2048, "Invalid path patterns"),
    "excludedHostnames": (253, "Invalid hostname patterns"),
    "excludedUserAgents": (512, "Invalid user agent patterns"),
}
MAX_LIST_ENTRIES: Final = 100  # of each pattern list and of excludedASNs
MAX_DETAILS: Final = 20  # details an error answer lists; omittedDetails counts the rest
_JSON_TYPES: Final = {int: "integer", str: "string", bool: "boolean"}
_FORMATS: Final[dict[str, dict[str, Any]]] = {
    "id": {"pattern": "^[0-9a-f]{12}$"},
    "createdAt": {"format": "date-time"},
    "updatedAt": {"format": "date-time"},
    "type": {"enum": list(SITE_TYPES)},
}


def _properties(fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON Schema of each field, from its Python type in ``_SCALAR_FIELDS``."""
    schemas = {}
    for name in fields:
        kind = _SCALAR_FIELDS[name][1]
        assert isinstance(kind, type)
        schemas[name] = {"type": _JSON_TYPES[kind], **_FORMATS.get(name, {})}
    return schemas


def _answer(properties: dict[str, Any]) -> dict[str, Any]:
    """An answer object: exactly these properties, all present."""
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Invalid request body, or a NUL byte in a path parameter",
        401: "Missing or unknown API key",
        403: "The key has no access to this site or organisation",
        404: "No such site (or organisation)",
        413: "Request body too large",
    }
    return {str(code): _json(_ref("Error"), texts[code]) for code in codes}


def _etag_reads(schema: str, summary: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [_SITE_ID, _IF_NONE_MATCH],
            "responses": {
                "200": _json(_ref(schema), "OK; carries an ETag"),
                "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                **_errors(400, 401, 403, 404),
            },
        }
    }


_SITE_ID = {
    "name": "siteId",
    "in": "path",
    "required": True,
    "description": "The numeric siteId or the 12-hex id of the site",
    "schema": {"type": "string"},
}
_IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}
_BOOL = {"type": "boolean"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_ASNS = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": MAX_ASN}}
_ASN_ENTRIES = {
    "type": "array",
    "maxItems": MAX_LIST_ENTRIES,
    "items": {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_ASN},
            {"type": "string", "pattern": "^\\s*([Aa][Ss])?[0-9]{1,10}\\s*$"},
        ]
    },
    "description": "AS numbers, as ints or text such as AS15169; answered as ints",
}
_PATTERN_ENTRIES = {
    field: {
        "type": "array",
        "maxItems": MAX_LIST_ENTRIES,
        "items": {"type": "string"},
        "description": f"At most {MAX_LIST_ENTRIES} entries of 1 to {length} characters "
        "after trimming",
    }
    for field, (length, _) in PATTERN_LISTS.items()
}
_LIST_ANSWERS = {**dict.fromkeys(LIST_READS, _STRINGS), "excludedASNs": _ASNS}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["success", "error"],
        "additionalProperties": False,
        "properties": {
            "success": {"const": False},
            "error": {"type": "string"},
            "details": {**_STRINGS, "maxItems": MAX_DETAILS},
            "omittedDetails": {
                "type": "integer",
                "minimum": 1,
                "description": "How many details were left out of the answer",
            },
        },
    },
    "Success": _answer({"success": {"const": True}}),
    "Health": _answer({"status": {"const": "ok"}}),
    "Ready": _answer({"status": {"const": "ready"}}),
    "Unready": _answer({"status": {"const": "unavailable"}, "reason": {"type": "string"}}),
    "CreateSite": {
        "type": "object",
        "required": ["domain", "name"],
        "additionalProperties": False,
        "properties": {
            "domain": {"type": "string"},
            "name": {"type": "string"},
            **_properties(CREATE_FLAGS),
            "type": {"enum": list(SITE_TYPES), "description": "web (the default) or mobile"},
        },
    },
    "CreatedSite": _answer(_properties(CREATED_FIELDS)),
    "Site": _answer({**_properties(SITE_FIELDS), "isOwner": _BOOL}),
    "ConfigUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "domain": {"type": "string"},
            "excludedIPs": _STRINGS,
            "excludedCountries": _STRINGS,
            **_PATTERN_ENTRIES,
            "excludedASNs": _ASN_ENTRIES,
            **_properties(CONFIG_SCALARS),
        },
    },
    "Config": _answer({**_properties(CONFIG_SCALARS), **_LIST_ANSWERS}),
    "ConfigUpdated": _answer(
        {"success": {"const": True}, "message": {"type": "string"}, "config": _ref("Config")}
    ),
    **{
        field[0].upper() + field[1:]: _answer({"success": {"const": True}, field: answer})
        for field, answer in _LIST_ANSWERS.items()
    },
    "PrivateLink": _answer(
        {
            "success": {"const": True},
            "data": _answer(
                {"privateLinkKey": {"type": ["string", "null"], "pattern": "^[0-9a-f]{12}$"}}
            ),
        }
    ),
    "FeedSite": {
        "type": "object",
        "required": ["siteId", "id", "domain"],
        "additionalProperties": False,
        "description": "A site as the edge decides on it: defaults left out (blockBots true, "
        "type web, empty lists)",
        "properties": {
            "siteId": {"type": "integer"},
            "id": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
            "domain": {"type": "string"},
            "blockBots": {"const": False},
            "type": {"enum": [kind for kind in SITE_TYPES if kind != "web"]},
            **{field: answer for field, answer in _LIST_ANSWERS.items()},
        },
    },
    "RulesFeed": {
        "type": "object",
        "required": ["epoch", "version", "full", "sites"],
        "additionalProperties": False,
        "properties": {
            "epoch": {"type": "string", "description": "The database's; another one: resync"},
            "version": {"type": "integer", "minimum": 0},
            "full": {
                "type": "boolean",
                "description": "Every site (take it in place of what you hold), or a delta",
            },
            "sites": {"type": "array", "items": _ref("FeedSite")},
            "deleted": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "siteIds deleted since the version asked for (deltas only)",
            },
        },
    },
    "PrivateLinkAction": {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "properties": {
            "action": {"enum": ["generate_private_link_key", "revoke_private_link_key"]}
        },
    },
}

_LIST_SUMMARIES: Final = {
    "excludedIPs": "Excluded IP entries",
    "excludedCountries": "Excluded country codes",
    "excludedPaths": "Excluded path globs (Rybbit v2.7)",
    "excludedHostnames": "Excluded hostname globs (Rybbit v2.7)",
    "excludedUserAgents": "Excluded user-agent substrings (Rybbit v2.7)",
    "excludedASNs": "Excluded AS numbers (edgefilter's own; Rybbit has none)",
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "edgefilter Sites API",
        "version": "1",
        "description": "Rybbit-compatible site management: sites, configuration, exclusions.",
    },
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": SCHEMAS,
    },
    "paths": {
        "/openapi.json": {
            "get": {
                "summary": "This description",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers",
                "security": [],
                "responses": {"200": _json(_ref("Health"), "The process is up")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the database answers SELECT 1",
                "security": [],
                "responses": {
                    "200": _json(_ref("Ready"), "Ready to serve"),
                    "503": _json(_ref("Unready"), "The database cannot be reached; the reason"),
                },
            }
        },
        "/api/sites/{orgId}": {
            "post": {
                "summary": "Create a site in an organisation (admin or owner)",
                "parameters": [
                    {"name": "orgId", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {"content": {"application/json": {"schema": _ref("CreateSite")}}},
                "responses": {
                    "201": _json(_ref("CreatedSite"), "Created"),
                    **_errors(400, 401, 403, 404, 413),
                },
            }
        },
        "/api/sites/{siteId}": {
            **_etag_reads("Site", "A site and its settings (no key needed for a public site)"),
            "delete": {
                "summary": "Delete a site and all its rows (admin or owner)",
                "parameters": [_SITE_ID],
                "responses": {
                    "200": _json(_ref("Success"), "Deleted"),
                    **_errors(400, 401, 403, 404),
                },
            },
        },
        "/api/sites/{siteId}/config": {
            "put": {
                "summary": "Partial update of a site's configuration (admin or owner)",
                "parameters": [_SITE_ID],
                "requestBody": {"content": {"application/json": {"schema": _ref("ConfigUpdate")}}},
                "responses": {
                    "200": _json(_ref("ConfigUpdated"), "Updated; the full config"),
                    **_errors(400, 401, 403, 404, 413),
                },
            }
        },
        **{
            f"/api/sites/{{siteId}}/{suffix}": _etag_reads(
                field[0].upper() + field[1:], _LIST_SUMMARIES[field]
            )
            for field, suffix in LIST_READS.items()
        },
        "/api/edge/rules": {
            "get": {
                "summary": "The versioned rules feed: every site the key reads (an edge key: "
                "every organisation), or the changes since a version; long poll with wait",
                "parameters": [
                    {
                        "name": "since",
                        "in": "query",
                        "description": "The version held: answer only what changed after it "
                        "(a full snapshot when it is older than the retained window)",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                    },
                    {
                        "name": "wait",
                        "in": "query",
                        "description": "Seconds to hold a since request until a change "
                        "commits (capped by the server)",
                        "schema": {"type": "number", "minimum": 0},
                    },
                    _IF_NONE_MATCH,
                ],
                "responses": {
                    "200": _json(_ref("RulesFeed"), "OK; carries an ETag; gzip if accepted"),
                    "304": {
                        "description": "Nothing changed (since is the version, or If-None-Match "
                        "matched); Retry-After when the server holds no more waiters"
                    },
                    **_errors(400, 401),
                },
            }
        },
        "/api/sites/{siteId}/private-link-config": {
            "get": {
                "summary": "The private link key (admin or owner)",
                "parameters": [_SITE_ID],
                "responses": {
                    "200": _json(_ref("PrivateLink"), "OK"),
                    **_errors(400, 401, 403, 404),
                },
            },
            "post": {
                "summary": "Generate or revoke the private link key (admin or owner)",
                "parameters": [_SITE_ID],
                "requestBody": {
                    "content": {"application/json": {"schema": _ref("PrivateLinkAction")}}
                },
                "responses": {
                    "200": _json(_ref("PrivateLink"), "OK"),
                    **_errors(400, 401, 403, 404, 413),
                },
            },
        },
    },
}
