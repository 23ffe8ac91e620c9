"""The published contract, loaded and checkable: the OpenAPI document of the HTTP routes
and the AsyncAPI document of the control channel (docs/api/, shipped beside this module).

`HttpContract.check_response` says what in one answer the OpenAPI document does not
allow; `ChannelContract.check_frame` does the same for one channel message. Both return
a list of problems (empty: conforms), so that callers decide whether that fails a test,
a conformance rule or nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7, DRAFT202012

HERE = Path(__file__).resolve().parent
OPENAPI_PATH = HERE / "openapi.yaml"
ASYNCAPI_PATH = HERE / "asyncapi.yaml"
OPENAPI_URI = "urn:camagent:openapi"
ASYNCAPI_URI = "urn:camagent:asyncapi"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
MAX_PROBLEMS = 5  # per check: the first few say enough


class ContractError(ValueError):
    """A contract document is missing or unreadable."""


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ContractError(f"cannot read {path.name}: {error}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path.name} is not a YAML mapping")
    return data


@cache
def openapi_document() -> dict[str, Any]:
    return _load_yaml(OPENAPI_PATH)


@cache
def openapi_json() -> bytes:
    """The OpenAPI document as the JSON `/openapi.json` serves (made once)."""
    return json.dumps(openapi_document(), separators=(",", ":")).encode()


@cache
def asyncapi_document() -> dict[str, Any]:
    return _load_yaml(ASYNCAPI_PATH)


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _errors(validator: jsonschema.protocols.Validator, instance: Any) -> list[str]:
    problems = []
    for error in validator.iter_errors(instance):
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        problems.append(f"{where}: {error.message[:300]}")
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


@dataclass(frozen=True)
class Operation:
    path: str  # the template, e.g. /v1/cameras/{id}
    method: str
    spec: dict[str, Any]

    @property
    def test_hook(self) -> bool:
        return bool(self.spec.get("x-test-hook"))


class HttpContract:
    """The OpenAPI document as something to check requests and answers against."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        self.document = document if document is not None else openapi_document()
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(OPENAPI_URI, resource)
        self._exact: dict[str, str] = {}
        self._templated: list[tuple[re.Pattern[str], str]] = []
        for template in self.document.get("paths", {}):
            if "{" in template:
                regex = re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
                self._templated.append((re.compile(f"^{regex}$"), template))
            else:
                self._exact[template] = template

    def operation(self, method: str, path: str) -> Operation | None:
        """The documented operation for a concrete request path, or None."""
        template = self._exact.get(path)
        if template is None:
            template = next((t for rx, t in self._templated if rx.match(path)), None)
        if template is None:
            return None
        spec = self.document["paths"][template].get(method.lower())
        if not isinstance(spec, dict):
            return None
        return Operation(template, method.lower(), spec)

    def operations(self) -> list[Operation]:
        return [
            Operation(path, method, item[method])
            for path, item in self.document["paths"].items()
            for method in METHODS
            if method in item
        ]

    def _validator(self, *pointer: str) -> jsonschema.protocols.Validator:
        ref = {"$ref": f"{OPENAPI_URI}#/{_pointer(*pointer)}"}
        return jsonschema.Draft202012Validator(ref, registry=self._registry)

    def _resolve(self, node: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Follow a `$ref` to a component (responses, headers); return it and its pointer."""
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return node, []
        parts = [p.replace("~1", "/").replace("~0", "~") for p in ref.lstrip("#/").split("/")]
        target: Any = self.document
        for part in parts:
            target = target[part]
        return target, parts

    def check_request_body(self, op: Operation, body: bytes) -> list[str]:
        """What the document finds wrong with a JSON request body (empty: allowed)."""
        content = op.spec.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            return []
        try:
            data = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            return ["the body is not JSON"]
        if data is None:
            return ["the body is empty"]
        pointer = ("paths", op.path, op.method, "requestBody", "content", "application/json")
        return _errors(self._validator(*pointer, "schema"), data)

    def check_response(
        self,
        op: Operation,
        status: int,
        headers: dict[str, str],
        body: bytes,
    ) -> list[str]:
        """What the document does not allow in this answer (empty: it conforms).

        `headers` with lower-case names."""
        responses = op.spec.get("responses", {})
        key = str(status) if str(status) in responses else "default"
        if key not in responses:
            return [f"status {status} is not documented (documented: {', '.join(responses)})"]
        response, base = self._resolve(responses[key])
        if not base:
            base = ["paths", op.path, op.method, "responses", key]
        problems = self._check_headers(response, headers)
        content = response.get("content")
        if not content:
            if body:
                problems.append(f"status {status} is documented without a body, got {len(body)} B")
            return problems
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in content:
            problems.append(f"content type {media!r} is not documented ({', '.join(content)})")
            return problems
        if media != "application/json":
            return problems
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return [*problems, "the body is not JSON"]
        schema_ptr = (*base, "content", media, "schema")
        problems += _errors(self._validator(*schema_ptr), data)
        return problems

    def _check_headers(self, response: dict[str, Any], headers: dict[str, str]) -> list[str]:
        problems = []
        for name, spec in response.get("headers", {}).items():
            header, _ = self._resolve(spec)
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    problems.append(f"header {name} is required")
                continue
            pattern = header.get("schema", {}).get("pattern")
            if pattern and not re.search(pattern, value):
                problems.append(f"header {name}: {value!r} does not match {pattern}")
        return problems


class ChannelContract:
    """The AsyncAPI document: which frames each side may send on each channel (`control`,
    the viewers' `live`), and the close codes."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        self.document = document if document is not None else asyncapi_document()
        resource = Resource.from_contents(self.document, default_specification=DRAFT7)
        self._registry: Registry[Any] = Registry().with_resource(ASYNCAPI_URI, resource)
        self.codes_of = {
            name: {int(c["code"]): c for c in channel.get("x-close-codes", [])}
            for name, channel in self.document["channels"].items()
        }
        self.close_codes = self.codes_of["control"]
        self._by_side: dict[tuple[str, str], list[str]] = {}
        for operation in self.document["operations"].values():
            channel = operation["channel"]["$ref"].rsplit("/", 1)[-1]
            side = "cloud" if operation["action"] == "send" else "device"
            for ref in operation["messages"]:
                self._add(channel, side, ref["$ref"])
            reply = operation.get("reply")
            if reply:
                other = "device" if side == "cloud" else "cloud"
                for ref in reply["messages"]:
                    self._add(channel, other, ref["$ref"])

    def _add(self, channel: str, side: str, channel_ref: str) -> None:
        """A message JSON frames are checked against (binary messages are bytes)."""
        name = channel_ref.rsplit("/", 1)[-1]
        message = self.document["channels"][channel]["messages"][name]["$ref"]
        pointer = message.lstrip("#/")
        node: Any = self.document
        for part in pointer.split("/"):
            node = node[part]
        if node.get("contentType", "application/json") == "application/json":
            self._by_side.setdefault((channel, side), []).append(f"{pointer}/payload")

    def check_frame(self, sender: str, frame: str | bytes, channel: str = "control") -> list[str]:
        """What the document finds wrong with one text frame `sender` ("cloud" or
        "device") sent on `channel`: it must match one of the messages that side may send."""
        try:
            message = json.loads(frame)
        except (ValueError, RecursionError):
            return ["the frame is not JSON"]
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return ["the frame is not an object with a string `type`"]
        candidates = []
        for pointer in self._by_side.get((channel, sender), []):
            validator = jsonschema.Draft7Validator(
                {"$ref": f"{ASYNCAPI_URI}#/{pointer}"}, registry=self._registry
            )
            problems = _errors(validator, message)
            if not problems:
                return []
            if _type_matches(self.document, pointer, message["type"]):
                candidates.extend(problems)
        if candidates:
            return [f"{message['type']}: {p}" for p in candidates[:MAX_PROBLEMS]]
        return [f"a {sender} does not send messages of type {message['type']!r}"]

    def check_close(self, code: int | None, channel: str = "control") -> list[str]:
        codes = self.codes_of[channel]
        if code is None or code in codes:
            return []
        return [f"close code {code} is not documented for {channel} ({sorted(codes)})"]


def _type_matches(document: dict[str, Any], pointer: str, type_name: str) -> bool:
    node: Any = document
    for part in pointer.split("/"):
        node = node[part]
    if "$ref" in node:
        return _type_matches(document, node["$ref"].lstrip("#/"), type_name)
    return bool(node.get("properties", {}).get("type", {}).get("const") == type_name)


@cache
def http_contract() -> HttpContract:
    return HttpContract()


@cache
def channel_contract() -> ChannelContract:
    return ChannelContract()
