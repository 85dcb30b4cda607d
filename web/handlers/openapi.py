"""GET /api/openapi.json: the OpenAPI 3.0 document of every /api route the application serves.

The paths come from the application's real route table (so a new route shows up at once); the
descriptions and schemas from ``web.openapi_schemas.OPERATIONS`` or from the handler module's own
``openapi`` dict. A route with neither is still listed, marked ``x-undocumented: true`` (a test
fails on those).
"""
from __future__ import annotations

import inspect
import sys
from typing import Any, Iterable

import tornado.web

from web.base import BaseHandler
from web.openapi_schemas import OPERATIONS, SCHEMAS

METHODS = ("get", "post", "put", "patch", "delete")
DOCUMENTED_PREFIXES = ("/api/",)
TITLE = "调度指挥中心 API (Dispatch Command Center)"
VERSION = "1.0.0"


def split_pattern(pattern: str) -> list[str | None]:
    """A route regex as literal pieces and ``None`` for each top-level group.

    ``/api/tickets/(GD\\d{8}-\\d{4,})/timeline$`` -> ``["/api/tickets/", None, "/timeline"]``.
    """
    pattern = pattern.rstrip("$")
    pieces: list[str | None] = []
    literal, depth, i = "", 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            if depth == 0:
                literal += pattern[i + 1]
            i += 2
            continue
        if ch == "(":
            if depth == 0:
                pieces.append(literal)
                literal = ""
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                pieces.append(None)
        elif depth == 0:
            literal += ch
        i += 1
    pieces.append(literal)
    return [p for p in pieces if p != ""]


def handler_methods(handler: type) -> list[str]:
    """The HTTP methods a handler class implements itself (not inherited from tornado)."""
    return [m for m in METHODS
            if getattr(handler, m, None) is not None
            and getattr(handler, m) is not getattr(tornado.web.RequestHandler, m, None)]


def parameter_names(handler: type, count: int) -> list[str]:
    """Names of the path parameters, from the handler method's signature."""
    for method in handler_methods(handler):
        params = [p for p in inspect.signature(getattr(handler, method)).parameters.values()
                  if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
        if len(params) >= count:
            return [p.name for p in params[:count]]
    return [f"p{i + 1}" for i in range(count)]


def route_rules(app: tornado.web.Application) -> list[tuple[str, type]]:
    """(regex, handler class) of every route of the application."""
    out = []
    for rule in app.wildcard_router.rules:
        regex = getattr(rule.matcher, "regex", None)
        if regex is not None and isinstance(rule.target, type):
            out.append((regex.pattern, rule.target))
    return out


def module_docs(handlers: Iterable[type]) -> dict[str, dict[str, Any]]:
    """The ``openapi`` dicts that handler modules carry about their own routes."""
    docs: dict[str, dict[str, Any]] = {}
    for handler in handlers:
        module = sys.modules.get(handler.__module__)
        docs.update(getattr(module, "openapi", None) or {})
    return docs


def build_document(rules: list[tuple[str, type]]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the /api routes among ``rules``."""
    own = module_docs(h for _, h in rules)
    paths: dict[str, Any] = {}
    for pattern, handler in rules:
        pieces = split_pattern(pattern)
        shape = "".join("{}" if p is None else p for p in pieces)
        if not shape.startswith(DOCUMENTED_PREFIXES):
            continue
        names = iter(parameter_names(handler, sum(p is None for p in pieces)))
        names_list = []
        template = ""
        for piece in pieces:
            if piece is None:
                name = next(names)
                names_list.append(name)
                template += "{" + name + "}"
            else:
                template += piece
        item: dict[str, Any] = {}
        if names_list:
            item["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                                  for n in names_list]
        for method in handler_methods(handler):
            key = f"{method.upper()} {shape}"
            operation = own.get(key) or OPERATIONS.get(key)
            if operation is None:
                doc = inspect.getdoc(handler) or handler.__name__
                operation = {"summary": doc.splitlines()[0], "x-undocumented": True,
                             "responses": {"200": {"description": "OK"}}}
            item[method] = {**operation, "operationId": f"{method}_{handler.__module__.rsplit('.', 1)[-1]}_"
                                                         f"{handler.__name__}"}
        paths[template] = item
    return {
        "openapi": "3.0.3",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "JSON over HTTP. Errors: {\"error\": {\"code\", \"message\"}}. Pages use a "
                                "session cookie and send the `_xsrf` cookie value as X-XSRFToken on "
                                "state-changing calls; API clients use a bearer token from POST /api/login. "
                                "Times are UTC (ISO 8601 with Z, or epoch seconds where named *_at/t/ts)."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "cookie": {"type": "apiKey", "in": "cookie", "name": "session"}},
            "responses": {"Error": {"description": "An error with a stable code",
                                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": SCHEMAS,
        },
    }


class OpenApiDocument(BaseHandler):
    """The OpenAPI document, built once from the application's routes."""

    async def prepare(self) -> None:
        """No session needed: the document describes, it reveals no data."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(self.application.settings["openapi_document"])  # built by web.app.make_app


routes = [(r"/api/openapi.json", OpenApiDocument)]
