"""One HTTP connection of the local API: aiohttp's RequestHandler with the API's rules.

- Refusals that aiohttp makes before any handler runs (a request line or header it cannot
  parse, headers over its limits) are answered as JSON `{error, message}` like every other
  answer, instead of aiohttp's text/plain; on aiohttp 3.8 (Debian 12) as on 3.9 and later,
  both of which route them through `handle_error`. So is any other text answer of 400 or
  more that never met the app's middleware (an unknown `Expect` header is refused before
  middlewares run): `finish_response` turns it into JSON before it is written.
- They are counted in the rate-limited log, not logged with a traceback each.
- The first request's headers must be complete within `header_s` of the handshake; later
  requests are bounded by aiohttp's keep-alive timeout, which closes a connection whose
  next request has not been read in full by then.
- Its Ticket is released when the connection ends, so the listener's counts stay true;
  while it is idle (answered, nothing new arrived) the gate may drop it to make room.

aiohttp has no public hook for any of this: `handle_error`, `finish_response` and
`log_access` are its undocumented RequestHandler methods (the others are asyncio's
Protocol). tests/agent/local_api/test_aiohttp_internals.py pins what is relied on of
them, so an aiohttp upgrade that changes it fails there, by name.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from agent.local_api.listener import Ticket
from agent.local_api.ratelog import RateLimitedLog

_END_OF_HEADERS = b"\r\n\r\n"
_MESSAGES = {
    400: ("bad_request", "the request is not valid HTTP"),
    500: ("internal_error", "the device failed to answer"),
    504: ("timeout", "the device took too long to answer"),
}


def _printable(text: str, limit: int = 120) -> str:
    """aiohttp's messages quote what the client sent: keep it short and printable."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return cleaned + ("…" if len(text) > limit else "")


class Connection(web.RequestHandler):
    def __init__(
        self,
        manager: web.Server,
        *,
        ticket: Ticket,
        header_s: float,
        notes: RateLimitedLog,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self.ticket = ticket
        self.header_s = header_s
        self.notes = notes
        self._header_timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self.header_s, self._headers_too_slow)
        self.ticket.handshaking = False
        self.ticket.awaiting_headers = True
        self.ticket.evict = self._evict

    def log_access(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float | None
    ) -> None:
        # aiohttp calls this once an answer has been written out in full: from here the
        # connection is idle until its next request begins to arrive (data_received).
        super().log_access(request, response, time)
        self.ticket.idle_since = asyncio.get_running_loop().time()

    def _evict(self) -> None:
        # An idle keep-alive connection: nothing is lost, and abort() gives the
        # descriptor back now instead of after a TLS close exchange.
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.ticket.idle_since is not None:  # the next request is on its way
            self.ticket.idle_since = None
            self.ticket.awaiting_headers = True
            self._tail = b""
        if self.ticket.awaiting_headers:
            # Until its headers are in, a request has given nothing worth keeping: such a
            # connection may be dropped to make room (issue 25: 32 connections dripping
            # one header byte a second after TLS kept the installer out).
            seen = self._tail + data
            if _END_OF_HEADERS in seen:
                self.ticket.awaiting_headers = False
                self._tail = b""
                if self._header_timer is not None:
                    self._header_timer.cancel()
                    self._header_timer = None
            else:
                self._tail = seen[-(len(_END_OF_HEADERS) - 1) :]
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.ticket.release()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self.notes.note(
            "slow_headers",
            f"local API: closed connections whose request headers took over "
            f"{self.header_s:g} s (latest from {self.ticket.address})",
        )
        self.force_close()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: Any
    ) -> Any:
        if resp.status >= 400 and not resp.prepared and resp.content_type != "application/json":
            resp = _as_json(resp)
        return await super().finish_response(request, resp, start_time)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        error, default = _MESSAGES.get(status, ("error", "the request failed"))
        detail = _printable(message) if status == 400 and message else ""
        self.notes.note(
            f"http_{status}",
            f"local API: answered HTTP {status} before any handler ran "
            f"(latest from {self.ticket.address}: {detail or type(exc).__name__})",
        )
        if request.writer.output_size > 0:
            # Part of an answer is out already: nothing sensible can follow it.
            raise ConnectionError("an answer was sent already; closing the connection")
        body = {"error": error, "message": f"{default}: {detail}" if detail else default}
        response = web.json_response(body, status=status)
        response.force_close()
        return response


def _as_json(resp: web.StreamResponse) -> web.Response:
    text = resp.text if isinstance(resp, web.Response) and resp.text else ""
    message = _printable(text.strip() or resp.reason)
    error = resp.reason.lower().replace(" ", "_") or "error"
    kept = {k: v for k, v in resp.headers.items() if k.lower() in ("allow", "retry-after")}
    answer = web.json_response({"error": error, "message": message}, status=resp.status)
    answer.headers.update(kept)
    answer.force_close()
    return answer
