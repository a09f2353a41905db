"""The OpenAPI 3.1 description of the reference Sites API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any, Final

from .._rules import _SCALAR_FIELDS, SITE_FLAGS

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
)
CONFIG_FLAGS: Final = tuple(SITE_FLAGS)
MAX_DETAILS: Final = 20  # details an error answer lists; omittedDetails counts the rest
_JSON_TYPES: Final = {int: "integer", str: "string", bool: "boolean"}
_FORMATS: Final[dict[str, dict[str, str]]] = {
    "id": {"pattern": "^[0-9a-f]{12}$"},
    "createdAt": {"format": "date-time"},
    "updatedAt": {"format": "date-time"},
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
            **_properties(CONFIG_FLAGS),
        },
    },
    "Config": _answer(
        {
            **_properties(CONFIG_FLAGS),
            "excludedIPs": _STRINGS,
            "excludedCountries": _STRINGS,
        }
    ),
    "ConfigUpdated": _answer(
        {"success": {"const": True}, "message": {"type": "string"}, "config": _ref("Config")}
    ),
    "ExcludedIPs": _answer({"success": {"const": True}, "excludedIPs": _STRINGS}),
    "ExcludedCountries": _answer({"success": {"const": True}, "excludedCountries": _STRINGS}),
    "PrivateLink": _answer(
        {
            "success": {"const": True},
            "data": _answer(
                {"privateLinkKey": {"type": ["string", "null"], "pattern": "^[0-9a-f]{12}$"}}
            ),
        }
    ),
    "PrivateLinkAction": {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "properties": {
            "action": {"enum": ["generate_private_link_key", "revoke_private_link_key"]}
        },
    },
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
        "/api/sites/{siteId}/excluded-ips": _etag_reads("ExcludedIPs", "Excluded IP entries"),
        "/api/sites/{siteId}/excluded-countries": _etag_reads(
            "ExcludedCountries", "Excluded country codes"
        ),
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
