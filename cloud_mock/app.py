"""`make_app`: the aiohttp application with every route, resource and hook wired up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from cloud_mock import (
    cameras,
    console,
    devices_ws,
    installer,
    nvr_device,
    openapi_docs,
    provisioning,
    registration_tokens,
    registrators,
    test_hooks,
    users,
)
from cloud_mock.api import (
    JSON_BODY_LIMIT,
    ROUTE_TABLE,
    RouteTable,
    allowed_methods_middleware,
    error_middleware,
)
from cloud_mock.clock import MockClock
from cloud_mock.keys import CLOCK, CONFIG, STORE, MockConfig
from cloud_mock.store import Store
from cloud_mock.video import routes as video

log = logging.getLogger(__name__)


def make_app(config: MockConfig, clock: MockClock | None = None) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, allowed_methods_middleware],
        client_max_size=JSON_BODY_LIMIT,
    )
    app[CONFIG] = config
    app[CLOCK] = clock or MockClock()
    app.cleanup_ctx.append(_store_ctx)
    app.on_response_prepare.append(_date_header)
    provisioning.setup(app)
    devices_ws.setup(app)
    video.setup(app, config.video)
    users.add_routes(app)
    cameras.add_routes(app)
    registrators.setup(app)
    registration_tokens.add_routes(app)
    nvr_device.add_routes(app)
    installer.setup(app)
    console.setup(app)
    openapi_docs.add_routes(app)
    if config.test_hooks:
        test_hooks.add_routes(app)
    # Made when every route is added (RuntimeError if one shadows a more specific one).
    app[ROUTE_TABLE] = RouteTable(app.router)
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the database, load fixtures and the built-in owner; close it at the end."""
    config = app[CONFIG]
    store = Store.open_in(config.data_dir)
    try:
        if config.fixtures is not None:
            users.apply_fixtures(store, config.fixtures)
        users.ensure_admin(store, config.data_dir)
        app[STORE] = store
        yield
    finally:
        store.close()


async def _date_header(request: web.Request, response: web.StreamResponse) -> None:
    # Devices without a real-time clock take their `ts` from this header (docs/design.md §2),
    # so it must follow the mock clock, not the host clock.
    response.headers["Date"] = request.app[CLOCK].http_date()
