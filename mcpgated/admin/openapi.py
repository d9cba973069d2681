"""
The OpenAPI 3.1 description of the admin API (a test checks it against the
real Klein routes).
"""

from __future__ import annotations

from typing import Any, Dict

from mcpgated import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
_API = {"$ref": "#/components/schemas/Api"}
_ID = {"name": "api_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _ok(description: str, schema: Dict[str, Any]) -> Dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _action(summary: str) -> Dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_ID],
            "responses": {"200": _ok("The API after the change", _API), "401": _ERROR,
                          "404": _ERROR, "409": _ERROR},
        }
    }


def openapi_document() -> Dict[str, Any]:
    plan = {
        "type": "object",
        "required": ["name", "security"],
        "properties": {
            "name": {"type": "string"},
            "security": {"enum": ["KEY_LESS", "API_KEY", "JWT", "OAUTH2"],
                         "description": "Only KEY_LESS is enforced by this version; others are refused."},
            "status": {"enum": ["STAGING", "PUBLISHED", "CLOSED"], "default": "PUBLISHED"},
            "description": {"type": "string"},
        },
        "additionalProperties": False,
    }
    definition = {
        "type": "object",
        "required": ["name", "version", "contextPath", "backend", "plans"],
        "properties": {
            "name": {"type": "string", "maxLength": 100},
            "version": {"type": "string", "maxLength": 50},
            "description": {"type": "string"},
            "contextPath": {"type": "string", "example": "/mcp-proxy",
                            "description": "Absolute path; no '..', query or fragment; "
                                           "must not overlap a deployed API's path."},
            "backend": {"type": "string", "format": "uri", "example": "http://localhost:3001/mcp"},
            "plans": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Plan"}},
        },
    }
    api = {
        "allOf": [
            {"$ref": "#/components/schemas/ApiDefinition"},
            {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "state": {"enum": ["STOPPED", "STARTED"]},
                    "deploymentState": {"enum": ["NEVER_DEPLOYED", "DEPLOYED", "NEED_REDEPLOY"]},
                    "needsRedeploy": {"type": "boolean",
                                      "description": "The deployed definition is behind the stored one."},
                    "createdAt": {"type": "string", "format": "date-time"},
                    "updatedAt": {"type": "string", "format": "date-time"},
                    "deployedAt": {"type": ["string", "null"], "format": "date-time"},
                    "deployed": {"oneOf": [{"$ref": "#/components/schemas/ApiDefinition"},
                                           {"type": "null"}]},
                },
            },
        ]
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mcpgated admin API", "version": __version__},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": {"summary": "Liveness", "security": [],
                                "responses": {"200": _ok("Up", {"type": "object"})}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"})}}},
            "/apis": {
                "get": {"summary": "List APIs",
                        "responses": {"200": _ok("All APIs", {"type": "object", "properties": {
                            "data": {"type": "array", "items": _API}}}), "401": _ERROR}},
                "post": {"summary": "Create an API (STOPPED, not deployed)",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/ApiDefinition"}}}},
                         "responses": {"201": _ok("Created", _API), "400": _ERROR, "401": _ERROR}},
            },
            "/apis/{api_id}": {
                "get": {"summary": "Get an API", "parameters": [_ID],
                        "responses": {"200": _ok("The API", _API), "401": _ERROR, "404": _ERROR}},
                "put": {"summary": "Replace the stored definition (live after _deploy)",
                        "parameters": [_ID],
                        "requestBody": {"required": True, "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/ApiDefinition"}}}},
                        "responses": {"200": _ok("Updated", _API), "400": _ERROR, "401": _ERROR,
                                      "404": _ERROR}},
                "delete": {"summary": "Delete a STOPPED API", "parameters": [_ID],
                           "responses": {"204": {"description": "Deleted"}, "401": _ERROR,
                                         "404": _ERROR, "409": _ERROR}},
            },
            "/apis/{api_id}/_deploy": _action("Deploy the stored definition and start the API"),
            "/apis/{api_id}/_start": _action("Start a deployed API"),
            "/apis/{api_id}/_stop": _action("Stop serving an API"),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Plan": plan, "ApiDefinition": definition, "Api": api,
                        "Error": {"type": "object", "required": ["error"], "properties": {
                            "error": {"type": "string"}, "field": {"type": ["string", "null"]}}}},
            "responses": {"Error": {"description": "Error",
                                    "content": {"application/json": {
                                        "schema": {"$ref": "#/components/schemas/Error"}}}}},
        },
    }
