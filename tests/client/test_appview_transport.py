"""The client over a real socket: what aioresponses cannot show (timeouts, cut bodies, chunking).

A tiny raw HTTP server on 127.0.0.1 answers each connection with the next canned response, so
the tests control every byte (a Content-Length that lies, a connection closed mid-body).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from etl.appview import AppView, ResponseTooLarge
from tests.client.conftest import did_n, item, post_view, profile_view

DID = did_n(1)


def http(status: str, body: bytes, *, headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    """A raw HTTP/1.1 response; `length` may lie about the body."""
    head = {"Content-Type": "application/json", "Connection": "close"}
    head["Content-Length"] = str(len(body) if length is None else length)
    head.update(headers or {})
    lines = [f"HTTP/1.1 {status}"] + [f"{name}: {value}" for name, value in head.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(status: str, chunks: list[bytes]) -> bytes:
    """A chunked response without Content-Length."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    return head.encode() + body


class RawServer:
    """Answers connection n with responses[n] (bytes, or (delay seconds, bytes))."""

    def __init__(self, responses: list) -> None:
        self.responses = list(responses)
        self.targets: list[str] = []  # request targets as sent on the wire
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.targets.append(head.split(b"\r\n")[0].split(b" ")[1].decode())
            answer = self.responses.pop(0)
            if isinstance(answer, tuple):
                delay, answer = answer
                await asyncio.sleep(delay)
            writer.write(answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def query_of(target: str) -> list[tuple[str, str]]:
    """The query as the server decodes it."""
    return parse_qsl(urlsplit(target).query, keep_blank_values=True)


def with_server(responses: list, call, client_settings, limiter, **overrides):
    """(result or exception, request targets) of `call(client)` against a RawServer."""

    async def go():
        server = RawServer(responses)
        async with server as base:
            settings = client_settings.replace(bluesky_base_url=base, **overrides)
            async with AppView(settings, limiter=limiter) as client:
                try:
                    result = await call(client)
                except Exception as exc:  # the tests inspect it
                    result = exc
        return result, server.targets, client

    return asyncio.run(go())


def test_a_real_server_decodes_exactly_the_values_sent(client_settings, limiter):
    hostile = "a&actor=evil#x+y%2Bz w=&limit=1"
    page1 = {"feed": [item(post_view(DID, "a"))], "cursor": hostile}
    page2 = {"feed": [item(post_view(DID, "b"))]}
    responses = [http("200 OK", json.dumps(page1).encode()), http("200 OK", json.dumps(page2).encode())]
    result, targets, _ = with_server(responses, lambda c: c.author_feed(DID, None), client_settings, limiter)
    assert result.stop == "end" and len(result.posts) == 2
    assert query_of(targets[1]) == [
        ("actor", DID),
        ("limit", "100"),
        ("filter", "posts_with_replies"),
        ("includePins", "false"),
        ("cursor", hostile),
    ]


def test_a_request_slower_than_the_timeout_is_retried(client_settings, limiter):
    ok = http("200 OK", json.dumps(profile_view(DID)).encode())
    result, targets, client = with_server(
        [(2.0, ok), ok], lambda c: c.account_status(DID), client_settings, limiter, request_timeout=0.3
    )
    assert result == "active"
    assert len(targets) == 2 and client.counters.errors == {"timeout": 1}


def test_a_body_cut_short_of_its_content_length_is_retried(client_settings, limiter):
    full = json.dumps(profile_view(DID)).encode()
    cut = http("200 OK", full[:20], length=len(full))
    result, targets, client = with_server(
        [cut, http("200 OK", full)], lambda c: c.account_status(DID), client_settings, limiter
    )
    assert result == "active"
    assert len(targets) == 2 and sum(client.counters.errors.values()) == 1


def test_a_chunked_body_past_the_cap_is_refused_and_not_retried(client_settings, limiter):
    big = chunked("200 OK", [b'{"did": "'] + [b"x" * 4096] * 8 + [b'"}'])
    result, targets, _ = with_server([big, big], lambda c: c.account_status(DID), client_settings, limiter, max_response_bytes=10_000)
    assert isinstance(result, ResponseTooLarge) and result.size is None
    assert len(targets) == 1


def test_a_redirect_from_a_real_server_is_not_followed(client_settings, limiter):
    moved = http("302 Found", b"", headers={"Location": "http://127.0.0.1:9/elsewhere"})
    result, targets, _ = with_server([moved], lambda c: c.account_status(DID), client_settings, limiter)
    assert "127.0.0.1" in str(result) and type(result).__name__ == "RedirectError"
    assert len(targets) == 1


@pytest.mark.parametrize("status", ["502 Bad Gateway", "200 OK"])
def test_an_html_page_instead_of_json_is_retried(status, client_settings, limiter):
    html = http(status, b"<html><body>upstream error</body></html>", headers={"Content-Type": "text/html"})
    ok = http("200 OK", json.dumps(profile_view(DID)).encode())
    result, targets, _ = with_server([html, ok], lambda c: c.account_status(DID), client_settings, limiter)
    assert result == "active" and len(targets) == 2
