"""Pins on the aiohttp internals the local API's `Connection` relies on.

aiohttp has no public hook for what `agent.local_api.connection.Connection` does: answer
its own refusals (a request it cannot parse, an unknown `Expect`) as JSON, and know when
an answer has been written out in full (the connection is idle from then on, so the gate
may drop it to make room). It overrides undocumented `web.RequestHandler` methods. Each
test here names one thing relied on, so an aiohttp upgrade that changes it fails here,
by name, rather than as a text/plain answer or a connection cap that never frees up.
The behaviour the API promises on top is tested in test_listener.py.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from aiohttp import web

from agent.local_api.connection import Connection
from tests.agent.local_api.test_listener import (  # noqa: F401 (fixtures)
    GET_INFO,
    Served,
    limits,
    request,
    served,
)

# The methods overridden, with the parameters aiohttp calls them with (by position).
OVERRIDDEN = {
    "handle_error": ["self", "request", "status", "exc", "message"],
    "finish_response": ["self", "request", "resp", "start_time"],
    "log_access": ["self", "request", "response", "time"],
}


@pytest.mark.parametrize(("name", "parameters"), OVERRIDDEN.items())
def test_the_overridden_methods_keep_their_signatures(name: str, parameters: list[str]) -> None:
    theirs = getattr(web.RequestHandler, name)
    assert list(inspect.signature(theirs).parameters) == parameters
    assert list(inspect.signature(getattr(Connection, name)).parameters) == parameters
    assert inspect.iscoroutinefunction(theirs) == (name == "finish_response")


class Calls:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[str, Any]] = []
        for name in OVERRIDDEN:
            self._spy(monkeypatch, name)

    def _spy(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        real = getattr(Connection, name)
        seen = self.seen
        if name == "finish_response":

            async def finish(self: Connection, request: Any, resp: Any, start: Any) -> Any:
                seen.append((name, (resp.status, resp.prepared, resp.content_type)))
                return await real(self, request, resp, start)

            monkeypatch.setattr(Connection, name, finish)
        else:

            def call(self: Connection, request: Any, *args: Any) -> Any:
                # handle_error reads how much of an answer is out already (nothing
                # sensible can follow part of one): the writer must count it.
                sent = request.writer.output_size if name == "handle_error" else None
                seen.append((name, (args[0], sent) if name == "handle_error" else None))
                return real(self, request, *args)

            monkeypatch.setattr(Connection, name, call)

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]


async def test_a_request_it_cannot_parse_goes_to_handle_error(
    served: Served,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = Calls(monkeypatch)
    status, headers, _ = await request(served, b"GARBAGE\r\n\r\n")
    assert (status, headers["content-type"]) == (400, "application/json; charset=utf-8")
    assert ("handle_error", (400, 0)) in calls.seen


async def test_a_refusal_before_the_middleware_passes_finish_response_unprepared(
    served: Served,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiohttp answers an unknown Expect itself, as text/plain: finish_response is where
    # the connection can still turn that answer into JSON.
    calls = Calls(monkeypatch)
    status, _, _ = await request(
        served,
        b"POST /v1/reset HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status == 417
    assert ("finish_response", (417, False, "text/plain")) in calls.seen


async def test_log_access_is_called_once_an_answer_is_out_even_with_no_access_log(
    served: Served,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server runs with access_log=None; aiohttp still calls log_access (and logs
    # nothing), after finish_response: that is when the connection becomes idle.
    calls = Calls(monkeypatch)
    status, _, _ = await request(served, GET_INFO)
    assert status == 200
    assert calls.names() == ["finish_response", "log_access"]
