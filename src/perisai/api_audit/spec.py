"""Load an OpenAPI 3.x or Swagger 2.0 document (file or URL) into :class:`Operation` values.

Local ``$ref`` pointers (``#/components/...``, ``#/definitions/...``) are resolved; remote ones
are not followed. Anything that is not a usable spec is a :class:`SpecError` with one line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from perisai.api_audit.interface import Operation, Param

__all__ = ["SpecError", "load_spec", "parse_spec", "read_spec_text"]

_METHODS = ("get", "post", "put", "patch", "delete")
_MAX_SPEC_BYTES = 20 * 1024 * 1024


class SpecError(ValueError):
    """A spec perisai cannot use; the message is one line that says why."""


def read_spec_text(source: str, timeout: float = 10.0) -> str:
    """The spec's text from a path or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        try:
            with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=True) as client:
                response = client.get(source)
        except httpx.HTTPError as error:
            raise SpecError(
                f"cannot fetch spec {source}: {error or type(error).__name__}"
            ) from None
        if response.status_code != 200:
            raise SpecError(f"cannot fetch spec {source}: HTTP {response.status_code}")
        return response.text
    path = Path(source)
    try:
        if path.stat().st_size > _MAX_SPEC_BYTES:
            raise SpecError(f"spec {source} is larger than {_MAX_SPEC_BYTES // 2**20} MiB")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"no such spec file: {source}") from None
    except OSError as error:
        raise SpecError(f"cannot read spec {source}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise SpecError(f"spec {source} is not UTF-8 text") from None


def load_spec(source: str, timeout: float = 10.0) -> tuple[list[Operation], list[str]]:
    """The spec's operations, and its server URLs (for a default base URL)."""
    return parse_spec(read_spec_text(source, timeout), source)


def parse_spec(text: str, source: str = "spec") -> tuple[list[Operation], list[str]]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise SpecError(f"{source} is not valid JSON or YAML{line}") from None
    if not isinstance(document, dict):
        raise SpecError(f"{source} is not an OpenAPI or Swagger document (not a mapping)")
    version = str(document.get("openapi") or document.get("swagger") or "")
    if document.get("openapi") is not None and version.startswith("3."):
        swagger = False
    elif version == "2.0":
        swagger = True
    else:
        raise SpecError(
            f"{source} is not an OpenAPI 3.x or Swagger 2.0 document "
            f"(no 'openapi: 3.x' or 'swagger: \"2.0\"' field)"
        )
    paths = document.get("paths")
    if not isinstance(paths, dict):
        raise SpecError(f"{source} has no 'paths' mapping")
    resolver = _Resolver(document)
    operations: list[Operation] = []
    for path, item in paths.items():
        item = resolver.resolve(item)
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method in _METHODS:
            raw = item.get(method)
            if not isinstance(raw, dict):
                continue
            operations.append(
                _operation(str(path), method, raw, shared, swagger, resolver, document)
            )
    return operations, _servers(document, swagger)


def _servers(document: Mapping[str, Any], swagger: bool) -> list[str]:
    if swagger:
        host = document.get("host")
        if not host:
            return []
        schemes = document.get("schemes") or ["https"]
        return [f"{schemes[0]}://{host}{document.get('basePath') or ''}"]
    return [
        str(s["url"]) for s in document.get("servers") or [] if isinstance(s, dict) and "url" in s
    ]


class _Resolver:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document

    def resolve(self, node: Any, depth: int = 0) -> Any:
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and depth < 20:
            ref: str = node["$ref"]
            if not ref.startswith("#/"):
                return {}
            target: Any = self.document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    raise SpecError(f"unresolvable $ref {ref}")
                target = target[part]
            node = target
            depth += 1
        return node


def _operation(
    path: str,
    method: str,
    raw: Mapping[str, Any],
    shared: list[Any],
    swagger: bool,
    resolver: _Resolver,
    document: Mapping[str, Any],
) -> Operation:
    params: list[Param] = []
    body: str | None = None
    consumes = raw.get("consumes") or document.get("consumes") or ["application/json"]
    for raw_param in [*shared, *(raw.get("parameters") or [])]:
        param = resolver.resolve(raw_param)
        if not isinstance(param, dict) or "name" not in param:
            continue
        where = str(param.get("in", "query"))
        if where == "body":
            body = "json"
            params.extend(
                _properties(resolver.resolve(param.get("schema") or {}), resolver, "body")
            )
            continue
        if where == "formData":
            body = "form"
            where = "form"
        if where == "cookie":
            continue
        schema = resolver.resolve(param.get("schema") or param)
        params.append(_param(str(param["name"]), where, schema, bool(param.get("required"))))
    if swagger and body == "form" and not any("form" in str(c) for c in consumes):
        body = "form"
    request_body = resolver.resolve(raw.get("requestBody") or {})
    if isinstance(request_body, dict) and isinstance(request_body.get("content"), dict):
        content: dict[str, Any] = request_body["content"]
        for media, location in (
            ("application/json", "json"),
            ("application/x-www-form-urlencoded", "form"),
            ("multipart/form-data", "form"),
        ):
            media_type = next((v for k, v in content.items() if k.startswith(media)), None)
            if isinstance(media_type, dict):
                body = location
                schema = resolver.resolve(media_type.get("schema") or {})
                params.extend(
                    _properties(schema, resolver, "body" if location == "json" else "form")
                )
                break
        else:
            if content:
                first = next(iter(content.values()))
                if isinstance(first, dict):
                    body = "json"
                    params.extend(
                        _properties(resolver.resolve(first.get("schema") or {}), resolver, "body")
                    )
    return Operation(
        method=method.upper(),
        path=path,
        summary=str(raw.get("summary") or ""),
        description=str(raw.get("description") or ""),
        operation_id=str(raw.get("operationId") or ""),
        params=tuple(params),
        body=body,
    )


def _properties(schema: Any, resolver: _Resolver, location: str) -> list[Param]:
    """One level of an object schema's properties as params: allOf merged; each anyOf/oneOf
    branch's own properties marked with the branch's number (a request sends one branch)."""
    schema = resolver.resolve(schema)
    if not isinstance(schema, dict):
        return []
    properties: dict[str, Any] = {}
    required: set[str] = set()
    branches: list[Any] = []
    for part in [schema, *(resolver.resolve(s) for s in schema.get("allOf") or [])]:
        if isinstance(part, dict):
            properties.update(part.get("properties") or {})
            required.update(str(r) for r in part.get("required") or [])
            alternatives = part.get("anyOf") or part.get("oneOf") or []
            branches += alternatives if isinstance(alternatives, list) else []
    params = [
        _param(str(name), location, resolver.resolve(prop), name in required)
        for name, prop in properties.items()
    ]
    for number, branch in enumerate(branches):
        for param in _properties(branch, resolver, location):
            if param.name not in properties:
                params.append(dataclasses.replace(param, alternative=number))
    return params


def _param(name: str, location: str, schema: Any, required: bool) -> Param:
    schema = schema if isinstance(schema, dict) else {}
    max_length = schema.get("maxLength")
    example = schema.get("example", schema.get("default"))
    if example is None and isinstance(schema.get("enum"), list) and schema["enum"]:
        example = schema["enum"][0]
    return Param(
        name=name,
        location=location,
        type=str(schema.get("type") or "string"),
        format=str(schema["format"]) if schema.get("format") else None,
        required=required,
        example=example,
        max_length=int(max_length) if isinstance(max_length, int) else None,
        pattern=str(schema["pattern"]) if schema.get("pattern") else None,
    )
