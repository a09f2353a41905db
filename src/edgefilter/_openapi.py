"""The OpenAPI 3.1 description of the reference Sites API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

_FLAG_NAMES = (
    "public",
    "saltUserIds",
    "blockBots",
    "sessionReplay",
    "webVitals",
    "trackErrors",
    "trackOutbound",
    "trackUrlParams",
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Invalid request body",
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
                **_errors(401, 403, 404),
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
        "properties": {
            "success": {"const": False},
            "error": {"type": "string"},
            "details": {**_STRINGS, "maxItems": 20},
            "omittedDetails": {
                "type": "integer",
                "minimum": 1,
                "description": "How many details were left out of the answer",
            },
        },
    },
    "Success": {"type": "object", "properties": {"success": {"const": True}}},
    "CreateSite": {
        "type": "object",
        "required": ["domain", "name"],
        "additionalProperties": False,
        "properties": {
            "domain": {"type": "string"},
            "name": {"type": "string"},
            "public": _BOOL,
            "saltUserIds": _BOOL,
            "blockBots": _BOOL,
        },
    },
    "CreatedSite": {
        "type": "object",
        "properties": {
            "siteId": {"type": "integer"},
            "id": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
            "domain": {"type": "string"},
            "name": {"type": "string"},
            "organizationId": {"type": "string"},
            "createdBy": {"type": "string"},
            "public": _BOOL,
            "saltUserIds": _BOOL,
            "blockBots": _BOOL,
        },
    },
    "Site": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "siteId": {"type": "integer"},
            "name": {"type": "string"},
            "domain": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"},
            "createdBy": {"type": "string"},
            "organizationId": {"type": "string"},
            "isOwner": _BOOL,
            **{flag: _BOOL for flag in _FLAG_NAMES},
        },
    },
    "ConfigUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "domain": {"type": "string"},
            "excludedIPs": _STRINGS,
            "excludedCountries": _STRINGS,
            **{flag: _BOOL for flag in _FLAG_NAMES},
        },
    },
    "Config": {
        "type": "object",
        "properties": {
            "excludedIPs": _STRINGS,
            "excludedCountries": _STRINGS,
            **{flag: _BOOL for flag in _FLAG_NAMES},
        },
    },
    "ConfigUpdated": {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "message": {"type": "string"},
            "config": _ref("Config"),
        },
    },
    "ExcludedIPs": {
        "type": "object",
        "properties": {"success": {"const": True}, "excludedIPs": _STRINGS},
    },
    "ExcludedCountries": {
        "type": "object",
        "properties": {"success": {"const": True}, "excludedCountries": _STRINGS},
    },
    "PrivateLink": {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "data": {
                "type": "object",
                "properties": {"privateLinkKey": {"type": ["string", "null"]}},
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
                "responses": {"200": _json(_ref("Success"), "Deleted"), **_errors(401, 403, 404)},
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
                "responses": {"200": _json(_ref("PrivateLink"), "OK"), **_errors(401, 403, 404)},
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
