"""Limits on the request line and headers, enforced in uvicorn's HTTP protocol.

uvicorn's httptools protocol reads headers of any size, and the parser joins a header's
pieces as they arrive, so the work grows faster than the header: one client sending a huge
header could hold the event loop for seconds. :func:`guarded_protocol` makes a subclass
that counts the bytes of each request's head (request line and headers) as they arrive and
answers ``431`` once they pass a limit, and ``408`` when a head is not complete within a
time limit. Either way the connection then closes: the answer is sent, the sending side
is shut, and what the client still sends is read and thrown away for a moment (at most
``LINGER_BYTES``, ``LINGER_SECONDS``), so that a client still writing can read the answer
instead of a reset.

A head that ends within a read is measured by its parsed parts (request line and headers);
one that does not is measured by the reads so far, after each read is parsed, so at most one
read (256 KiB) past the limit is ever parsed. Slow clients within the limits are unaffected,
and none can delay another.
"""

from __future__ import annotations

import json

LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0


def _answer(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


def guarded_protocol(max_head_bytes: int, head_timeout_seconds: float) -> type:
    """uvicorn's httptools protocol with a size and a time limit on each request's head.

    Pass the class as ``uvicorn.Config(http=...)``.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    too_large = _answer(431, "Request Header Fields Too Large",
                        f"the request line and headers are over {max_head_bytes} bytes; send shorter headers")
    too_slow = _answer(408, "Request Timeout",
                       f"the request line and headers did not arrive within {head_timeout_seconds:g} s; "
                       "send them at once")

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _refusal: bytes | None = None  # set by a parser callback that refuses the head

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._awaiting_head = True  # no request in progress: the next bytes are a head
            self._head_bytes = 0
            self._head_restarted = False  # a request ended within the current read
            self._refused = False
            self._discarded = 0
            self._head_parts = 0  # bytes of the current head's parsed parts
            self._head_timer = self.loop.call_later(head_timeout_seconds, self._head_timed_out)

        def connection_lost(self, exc) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                self._discarded += len(data)
                if self._discarded > LINGER_BYTES:
                    self.transport.close()
                return
            if self._awaiting_head and self._head_timer is None:  # the next request on a kept-alive connection
                self._head_timer = self.loop.call_later(head_timeout_seconds, self._head_timed_out)
            counted = self._awaiting_head
            self._head_restarted = False
            super().data_received(data)
            if self._awaiting_head and counted and not self._head_restarted and not self.transport.is_closing():
                # None of this read completed a head, so all of it belongs to one.
                self._head_bytes += len(data)
                if self._head_bytes > max_head_bytes:
                    self._refuse(too_large)

        def on_message_begin(self) -> None:
            self._head_parts = 16  # method, version, spaces, line ends
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._head_parts += len(url)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_parts += len(name) + len(value) + 4
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self._head_parts > max_head_bytes:
                self._refusal = too_large
                raise ValueError("head too large")  # stops the parser: uvicorn calls send_400_response
            self._awaiting_head = False
            self._head_bytes = 0
            self._cancel_head_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._awaiting_head = True
            self._head_bytes = 0
            self._head_restarted = True

        def send_400_response(self, msg: str) -> None:
            if self._refusal is not None:
                self._refuse(self._refusal)
            else:
                super().send_400_response(msg)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._awaiting_head and not self._refused and not self.transport.is_closing():
                self._refuse(too_slow)

        def _cancel_head_timer(self) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
                self._head_timer = None

        def _refuse(self, answer: bytes) -> None:
            self._refused = True
            self._cancel_head_timer()
            if self.cycle is not None and not self.cycle.response_complete:
                # A pipelined head while a response is still being written: an answer would
                # interleave with it, so just close.
                self.transport.close()
                return
            self.transport.write(answer)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)

    return GuardedHttpToolsProtocol
