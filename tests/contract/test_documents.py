"""The contract documents themselves: valid, complete, and served by the mock."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from cloud_mock import devices_ws
from cloud_mock.conformance.documents import (
    ASYNCAPI_PATH,
    OPENAPI_PATH,
    ChannelContract,
    HttpContract,
    asyncapi_document,
    openapi_document,
)
from cloud_mock.openapi_docs import CSP
from cloud_mock.server import RunningMock
from tests.cloud_mock.conftest import client_for, mock  # noqa: F401 (fixture)
from tests.contract.routes import served_routes

REPO = Path(__file__).resolve().parents[2]


# Documented for issue 15 (claims); the "mockstore" branch adds the route. Remove once merged.
def test_documents_shipped_with_the_mock_are_the_ones_in_docs_api() -> None:
    assert OPENAPI_PATH.read_bytes() == (REPO / "docs/api/openapi.yaml").read_bytes()
    assert ASYNCAPI_PATH.read_bytes() == (REPO / "docs/api/asyncapi.yaml").read_bytes()


def test_openapi_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def _schemas(node: Any) -> list[dict[str, Any]]:
    """Every schema object under `node` (payloads, components)."""
    return [value for value in node.values() if isinstance(value, dict)]


def test_asyncapi_message_schemas_are_valid_json_schema() -> None:
    document = asyncapi_document()
    assert document["asyncapi"].startswith("3.")
    schemas = document["components"]["schemas"]
    assert set(schemas) >= {"DeviceHello", "CloudHello", "Heartbeat", "Command", "Result"}
    for schema in _schemas(schemas):
        jsonschema.Draft7Validator.check_schema(schema)
    for message in document["components"]["messages"].values():
        ref = message["payload"]["$ref"]
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas
    # Every operation names a message of its own channel.
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"].rsplit("/", 1)[1]
        channel_messages = document["channels"][channel]["messages"]
        for ref in operation["messages"]:
            assert ref["$ref"].startswith(f"#/channels/{channel}/messages/")
            assert ref["$ref"].rsplit("/", 1)[1] in channel_messages


def test_close_codes_of_the_agent_and_the_mock_are_documented() -> None:
    from agent import control_channel

    codes = ChannelContract().close_codes
    assert control_channel.CLOSE_REVOKED in codes
    for name in ("CLOSE_BAD_HELLO", "CLOSE_REVOKED", "CLOSE_REPLACED", "CLOSE_GOING_AWAY"):
        assert getattr(devices_ws, name) in codes, name


def test_every_route_of_the_mock_is_documented(tmp_path: Path) -> None:
    """The route tables against the document: nothing missing, nothing extra."""
    served = served_routes(tmp_path)
    documented = {(op.method, op.path) for op in HttpContract().operations()}
    assert served - documented == set(), "routes the document lacks"
    assert documented - served == set(), "documented routes the mock lacks"


def test_test_hooks_are_marked() -> None:
    for op in HttpContract().operations():
        hook = op.path.startswith("/v1/test/")
        assert op.test_hook == hook, op.path
        assert ("test hooks" in op.spec["tags"]) == hook, op.path


def test_every_error_has_a_schema() -> None:
    contract = HttpContract()
    for op in contract.operations():
        for status, response in op.spec["responses"].items():
            resolved, _ = contract._resolve(response)
            if int(status) >= 400:
                assert "application/json" in resolved.get("content", {}), (op.path, status)


async def test_mock_serves_the_document_and_its_renderer(mock: RunningMock) -> None:  # noqa: F811
    async with client_for(mock) as client:
        async with client.get("/openapi.json") as answer:
            assert answer.status == 200
            assert json.loads(await answer.read()) == yaml.safe_load(OPENAPI_PATH.read_text())
        async with client.get("/docs") as answer:
            assert answer.status == 200, "run scripts/setup.sh: it vendors swagger-ui-dist"
            assert answer.headers["Content-Security-Policy"] == CSP
            page = await answer.text()
        # No inline script (the CSP forbids it) and nothing from another origin.
        assert "<script>" not in page
        assets = [a for a in re.findall(r'(?:src|href)="([^"]+)"', page) if a != "data:,"]
        assert assets
        assert all(a.startswith("/docs/assets/") for a in assets)
        for asset in assets:
            async with client.get(asset) as answer:
                assert answer.status == 200, asset
                assert len(await answer.read()) > 0
        async with client.get("/docs/assets/..%2Fstore.py") as answer:
            assert answer.status == 404


async def test_without_test_hooks_the_document_has_none_of_them(tmp_path: Path) -> None:
    """A mock without --test-hooks describes the routes it answers, as a production cloud
    would: no test-hook operation, no tag for them, no component only they used."""
    from cloud_mock.server import start
    from tests.cloud_mock.conftest import mock_options

    running = await start(mock_options(tmp_path / "cloud", test_hooks=False))
    try:
        async with client_for(running) as client:
            async with client.get("/openapi.json") as answer:
                assert answer.status == 200
                served = json.loads(await answer.read())
            async with client.get("/v1/test/clock") as answer:
                assert answer.status == 404
    finally:
        await running.stop()
    full = openapi_document()
    validate(served)
    assert not [p for p in served["paths"] if p.startswith("/v1/test/")]
    text = json.dumps(served["paths"])
    assert "x-test-hook" not in text
    assert "test hooks" not in text
    assert "test hooks" not in [tag["name"] for tag in served["tags"]]
    assert "NoTestHooks" not in served["components"]["responses"]
    assert {"ClockNow", "AdvanceClock", "Fault"}.isdisjoint(served["components"]["schemas"])
    # Everything else is the document as written: every route this mock serves, and every
    # component something left still uses (PollRecord: a camera's provisioning history).
    assert served["paths"] == {
        path: item for path, item in full["paths"].items() if not path.startswith("/v1/test/")
    }
    assert "PollRecord" in served["components"]["schemas"]
    documented = {(op.method, op.path) for op in HttpContract(served).operations()}
    assert documented == served_routes(tmp_path / "routes", test_hooks=False)


def test_the_filter_drops_an_operation_by_its_mark_or_its_tag_alone() -> None:
    from cloud_mock.openapi_docs import without_test_hooks

    ok = {"responses": {"200": {"$ref": "#/components/responses/Shared"}}}
    document = {
        "tags": [{"name": "test hooks"}, {"name": "other"}],
        "paths": {
            "/marked": {"post": {"x-test-hook": True, "responses": {}}},
            "/tagged": {
                "get": {
                    "tags": ["test hooks"],
                    "responses": {"200": {"$ref": "#/components/responses/HookOnly"}},
                },
                "put": ok,
            },
        },
        "components": {
            "responses": {
                "HookOnly": {"content": {"a": {"schema": {"$ref": "#/components/schemas/H"}}}},
                "Shared": {"description": "kept"},
            },
            "schemas": {"H": {"type": "string"}, "Unused": {"type": "string"}},
        },
    }
    kept = without_test_hooks(document)
    assert kept["paths"] == {"/tagged": {"put": ok}}
    assert kept["tags"] == [{"name": "other"}]
    assert kept["components"] == {
        "responses": {"Shared": {"description": "kept"}},
        "schemas": {"Unused": {"type": "string"}},  # not the hooks': not theirs to remove
    }
    assert "/marked" in document["paths"]  # the document itself is left as it was


@pytest.mark.parametrize("name", ["openapi.yaml", "asyncapi.yaml"])
def test_documents_cite_design_sections_not_design_brief(name: str) -> None:
    text = (REPO / "docs/api" / name).read_text()
    assert "DESIGN" not in text
    assert "docs/design.md" in text


def test_the_http_contract_would_catch_an_answer_outside_it() -> None:
    """The checks the mock's tests rely on are not vacuous."""
    contract = HttpContract()
    poll = contract.operation("POST", "/v1/provisioning/poll")
    camera = contract.operation("GET", "/v1/cameras/abc")
    assert poll is not None
    assert camera is not None
    json_type = {"content-type": "application/json"}
    assert contract.check_response(poll, 204, {"date": "x"}, b"") == []
    assert contract.check_response(poll, 500, json_type, b'{"error": "x"}')  # undocumented
    assert contract.check_response(poll, 503, json_type, b'{"error": "x"}')  # no Retry-After
    assert contract.check_response(poll, 204, {"date": "x"}, b"{}")  # a body on 204
    assert contract.check_response(poll, 200, {"date": "x", **json_type}, b"{}")  # no field
    assert contract.check_response(poll, 400, {"content-type": "text/plain"}, b"bad")
    assert contract.check_response(camera, 200, json_type, b'{"camera_id": "x"}')
    assert contract.check_request_body(poll, b'{"device_id": "x"}')
    assert contract.check_request_body(poll, b"") == ["the body is empty"]


ASYNCAPI_SCHEMA = REPO / ".venv/share/asyncapi-specs/3.0.0.json"


def test_asyncapi_document_is_valid_asyncapi_3() -> None:
    """Against AsyncAPI's own JSON Schema (npm's @asyncapi/specs, fetched by setup.sh)."""
    assert ASYNCAPI_SCHEMA.is_file(), "run scripts/setup.sh --tests: it fetches @asyncapi/specs"
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    document = asyncapi_document()
    assert [e.message for e in validator.iter_errors(document)] == []
    # Not vacuous: an AsyncAPI 2 style operation is refused.
    broken = json.loads(json.dumps(document))
    broken["operations"]["sendCommand"]["action"] = "publish"
    assert not validator.is_valid(broken)


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every object under `node`, `node` included."""
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def test_no_allof_restates_a_property_so_generators_can_model_every_schema() -> None:
    """openapi-python-client cannot merge `error: {type: string}` with `error: {const: x}`
    from two members of an allOf, and drops the schema with every answer using it (issue
    23): a narrowed property is written once, in one flat object, with its type."""
    document = openapi_document()
    schemas = document["components"]["schemas"]

    def properties(member: dict[str, Any]) -> set[str]:
        ref = member.get("$ref", "")
        target = (
            schemas[ref.rsplit("/", 1)[1]] if ref.startswith("#/components/schemas/") else member
        )
        names = set(target.get("properties", {}))
        for inner in target.get("allOf", []):
            names |= properties(inner)
        return names

    checked = 0
    for node in _walk(document):
        members = node.get("allOf")
        if not isinstance(members, list):
            continue
        seen: set[str] = set()
        for member in members:
            names = properties(member)
            assert not names & seen, f"allOf restates {sorted(names & seen)}"
            seen |= names
        checked += 1
        for name in node.get("properties", {}):
            assert name not in seen, f"a property beside an allOf restates {name}"
    assert checked > 5
    for node in _walk(document):
        if "const" in node or ("enum" in node and "properties" not in node):
            assert "type" in node, node
