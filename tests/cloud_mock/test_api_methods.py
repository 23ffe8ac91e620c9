"""`Allow` per path as docs/api/openapi.yaml has it: OPTIONS answers 204 with the methods
the document lists for the path (HEAD beside GET, and OPTIONS), and a wrong method 405
with the same; a concrete path is never answered by a template that also matches it."""

from __future__ import annotations

import re

import aiohttp
import pytest
from aiohttp import web

from cloud_mock.api import RouteTable
from cloud_mock.conformance.documents import METHODS, openapi_document
from cloud_mock.server import RunningMock

# Values that the document's path parameters accept (a pattern where it has one).
PARAMETER_VALUES = {"run": "r000000000000001", "file": "init.mp4", "session": "s" * 22}
OTHER_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")


def _documented() -> list[tuple[str, str, set[str]]]:
    """(template, concrete path, Allow the path must answer) for every documented path."""
    found = []
    for template, item in openapi_document()["paths"].items():
        methods = {m.upper() for m in METHODS if m in item}
        if "GET" in methods:
            methods.add("HEAD")
        path = re.sub(r"\{([^}]+)\}", lambda m: PARAMETER_VALUES.get(m.group(1), "x1"), template)
        found.append((template, path, methods | {"OPTIONS"}))
    return found


def _allow(answer: aiohttp.ClientResponse) -> set[str]:
    return set(answer.headers.get("Allow", "").split(","))


async def test_options_and_wrong_methods_answer_the_paths_own_methods(
    mock: RunningMock, client: aiohttp.ClientSession
) -> None:
    documented = _documented()
    assert ("/v1/registrators/sync-all", "/v1/registrators/sync-all", {"OPTIONS", "POST"}) in (
        documented
    )
    for template, path, allow in documented:
        async with client.options(path) as answer:
            assert answer.status == 204, template
            assert _allow(answer) == allow, template
        for method in OTHER_METHODS:
            if method in allow:
                continue
            async with client.request(method, path) as answer:
                assert answer.status == 405, (method, template)
                assert _allow(answer) == allow, (method, template)
                assert (await answer.json())["error"] == "method not allowed"


async def test_a_concrete_path_is_not_answered_by_a_template_that_matches_it(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    # GET /v1/registrators/{id} would take "sync-all" for an ID (404 "no such registrator").
    for method in ("GET", "PATCH", "DELETE"):
        async with client.request(method, "/v1/registrators/sync-all", headers=auth) as answer:
            assert answer.status == 405, method
            assert _allow(answer) == {"OPTIONS", "POST"}
    async with client.post("/v1/registrators/sync-all", headers=auth) as answer:
        assert answer.status == 200
        assert (await answer.json()) == {"results": []}
    async with client.get("/v1/registrators/unknown", headers=auth) as answer:
        assert answer.status == 404


async def _handler(request: web.Request) -> web.Response:
    return web.Response()


def test_a_template_registered_before_a_path_it_shadows_is_refused() -> None:
    app = web.Application()
    app.router.add_get("/things/{id}", _handler)
    app.router.add_get("/things/all", _handler)
    with pytest.raises(RuntimeError, match="register the specific path first"):
        RouteTable(app.router)
    fine = web.Application()
    fine.router.add_get("/things/all", _handler)
    fine.router.add_get("/things/{id}", _handler)
    fine.router.add_post("/things/{id}/more", _handler)
    table = RouteTable(fine.router)
    assert [r.canonical for r in table.shadows[list(fine.router.resources())[1]]] == ["/things/all"]
