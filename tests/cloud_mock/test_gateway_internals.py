"""A pin on the aiohttp internal the console's gateway relies on (cloud_mock/console/gateway.py).

The gateway hands a cookie request to the API's own handler as if the router had matched
it: it resolves the inner path, then sets the request's private `_match_info`, as
aiohttp's own dispatch does (`Application._handle`). aiohttp has no public way to give a
cloned request its match (`Request.clone` takes no match_info). These tests fail, by
name, if an aiohttp upgrade changes what that relies on.
"""

from __future__ import annotations

import inspect

from aiohttp import web
from aiohttp.test_utils import make_mocked_request


def test_aiohttps_own_dispatch_sets_the_private_match_info() -> None:
    assert "request._match_info = match_info" in inspect.getsource(web.Application._handle)


async def test_a_clone_given_its_own_match_reads_it_back_as_match_info() -> None:
    seen: dict[str, object] = {}

    async def thing(request: web.Request) -> web.Response:
        seen["id"] = request.match_info["id"]
        seen["app"] = request.match_info.apps[-1]
        seen["route"] = request.match_info.route.name
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/v1/things/{id}", thing, name="thing")
    app.router.add_get("/console/{tail:.+}", thing)
    outer = make_mocked_request("GET", "/console/v1/things/7", app=app)
    inner = outer.clone(rel_url="/v1/things/42")
    match = await app.router.resolve(inner)
    assert match.http_exception is None
    match.add_app(app)
    match.freeze()
    # What the gateway does: the clone's match would otherwise be the outer one's (or none).
    inner._match_info = match
    assert inner.match_info is match
    response = await match.handler(inner)
    assert isinstance(response, web.Response)
    assert seen == {"id": "42", "app": app, "route": "thing"}
