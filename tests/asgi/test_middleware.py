"""The middleware in front of real host apps: only its paths are handled, all else passes."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from attesto_asgi import AttestoMiddleware, Client, Config, Event, Hooks, issue_code
from tests.core.grants.authcode_helpers import pkce_pair
from tests.helpers import SVC_SECRET, Lifespan, http_client, not_found_app, websocket_roundtrip

AUTH = ("svc", SVC_SECRET)
BASIC = (b"authorization", b"Basic " + base64.b64encode(f"svc:{SVC_SECRET}".encode()))
CC = {"grant_type": "client_credentials"}


def starlette_app(config: Config, lifespan_log: list[str]) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {"method": request.method, "path": request.url.path, "query": request.url.query, "body": body.decode()}
        )

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        lifespan_log.append("startup")
        yield
        lifespan_log.append("shutdown")

    return Starlette(
        routes=[
            Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
            WebSocketRoute("/ws", ws),
        ],
        middleware=[Middleware(AttestoMiddleware, config=config)],
        lifespan=lifespan,
    )


async def test_starlette_other_paths_websockets_and_lifespan_pass_through(config: Config) -> None:
    log: list[str] = []
    app = starlette_app(config, log)
    async with Lifespan(app), http_client(app) as http:
        assert log == ["startup"]
        r = await http.post("/oauth/tokens?x=1", content=b"raw=body")
        assert r.json() == {"method": "POST", "path": "/oauth/tokens", "query": "x=1", "body": "raw=body"}
        r = await http.get("/api/things")
        assert r.json()["path"] == "/api/things"
        sent = await websocket_roundtrip(app, "/ws")
        assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
        assert sent[1]["text"] == "hello"
        r = await http.post("/oauth/token", data=CC, auth=AUTH)
        assert r.status_code == 200
        assert "access_token" in r.json()
    assert log == ["startup", "shutdown"]


async def test_fastapi_app_behind_the_middleware(config: Config) -> None:
    api = FastAPI()

    @api.get("/items/{item}")
    async def item(item: str) -> dict[str, str]:
        return {"item": item}

    @api.post("/oauth/other")
    async def other() -> dict[str, str]:
        return {"other": "yes"}

    api.add_middleware(AttestoMiddleware, config=config)
    async with http_client(api) as http:
        assert (await http.get("/items/7")).json() == {"item": "7"}
        assert (await http.post("/oauth/other")).json() == {"other": "yes"}
        assert (await http.post("/oauth/token", data=CC, auth=AUTH)).status_code == 200
        assert (await http.get("/.well-known/openid-configuration")).json()["issuer"] == config.issuer


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_token_path_are_405_with_allow(client: httpx.AsyncClient, method: str) -> None:
    r = await client.request(method, "/oauth/token")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"] == "invalid_request"


async def test_https_required_except_loopback(make_config: Callable[..., Config]) -> None:
    config = make_config(issuer="https://as.example.com")
    app = AttestoMiddleware(not_found_app, config)
    async with http_client(app, "http://as.example.com") as plain:
        r = await plain.post("/oauth/token", data=CC, auth=AUTH)
        assert r.status_code == 400
        assert r.json()["error_description"] == "HTTPS is required."
    async with http_client(app, "https://as.example.com") as tls:
        assert (await tls.post("/oauth/token", data=CC, auth=AUTH)).status_code == 200
    async with http_client(app, "http://127.0.0.1") as loop:
        assert (await loop.post("/oauth/token", data=CC, auth=AUTH)).status_code == 200
    relaxed = AttestoMiddleware(not_found_app, make_config(issuer="https://as.example.com", require_https=False))
    async with http_client(relaxed, "http://as.example.com") as plain:
        assert (await plain.post("/oauth/token", data=CC, auth=AUTH)).status_code == 200


class Recorder(Hooks):
    def __init__(self, fail: bool = False) -> None:
        self.events: list[Event] = []
        self.fail = fail

    async def on_event(self, event: Event) -> None:
        self.events.append(event)
        if self.fail:
            raise RuntimeError("sink down")


async def test_events_reach_on_event_after_the_response(make_config: Callable[..., Config]) -> None:
    hooks = Recorder()
    order: list[str] = []
    app = AttestoMiddleware(not_found_app, make_config(hooks=hooks))

    def seen(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            order.append(f"body with {len(hooks.events)} events emitted")

    await _raw(app, [{"type": "http.request", "body": b"grant_type=client_credentials"}], [BASIC], on_send=seen)
    assert order == ["body with 0 events emitted"]
    assert [e.name for e in hooks.events] == ["token_issued"]


async def test_failing_event_sink_is_logged_not_propagated(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    hooks = Recorder(fail=True)
    async with http_client(AttestoMiddleware(not_found_app, make_config(hooks=hooks))) as http:
        with caplog.at_level(logging.ERROR):
            r = await http.post("/oauth/token", data=CC, auth=AUTH)
    assert r.status_code == 200
    assert "hooks.on_event failed for token_issued" in caplog.text


async def test_default_sink_logs_events_at_info_and_is_skipped_when_info_is_off(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[str] = []
    default_sink = Hooks.on_event

    async def watched(self: Hooks, event: Event) -> None:
        handed.append(event.name)
        await default_sink(self, event)

    # Built first: the middleware tells the default sink from a host's once, at start-up.
    app = AttestoMiddleware(not_found_app, make_config())
    monkeypatch.setattr(Hooks, "on_event", watched)
    async with http_client(app) as http:
        with caplog.at_level(logging.INFO, logger="attesto_asgi.events"):
            assert (await http.post("/oauth/token", data=CC, auth=AUTH)).status_code == 200
        assert handed == ["token_issued"]
        assert "token_issued client=svc" in caplog.text
        with caplog.at_level(logging.WARNING, logger="attesto_asgi.events"):
            assert (await http.post("/oauth/token", data=CC, auth=AUTH)).status_code == 200
        assert handed == ["token_issued"]


async def test_a_host_sink_gets_every_event_whatever_the_log_level(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    subclassed = Recorder()
    assigned: list[Event] = []
    plain = Hooks()

    async def sink(event: Event) -> None:
        assigned.append(event)

    plain.on_event = sink  # type: ignore[method-assign]
    for hooks in (subclassed, plain):
        async with http_client(AttestoMiddleware(not_found_app, make_config(hooks=hooks))) as http:
            with caplog.at_level(logging.CRITICAL, logger="attesto_asgi.events"):
                assert (await http.post("/oauth/token", data=CC, auth=AUTH)).status_code == 200
    assert [e.name for e in subclassed.events] == ["token_issued"]
    assert [e.name for e in assigned] == ["token_issued"]


async def test_denials_at_the_edge_are_events_without_secrets(make_config: Callable[..., Config]) -> None:
    hooks = Recorder()
    async with http_client(AttestoMiddleware(not_found_app, make_config(hooks=hooks))) as http:
        await http.post("/oauth/token", data={**CC, "client_id": "poster", "client_secret": "guess-123"})
    (event,) = hooks.events
    assert event.name == "token_denied"
    assert event.client_id == "poster"
    assert event.data["error"] == "invalid_client"
    assert "guess-123" not in repr(event)


async def test_no_secret_or_token_in_logs(make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture) -> None:
    async with http_client(AttestoMiddleware(not_found_app, make_config())) as http:
        with caplog.at_level(logging.DEBUG):
            ok = await http.post("/oauth/token", data=CC, auth=AUTH)
            await http.post("/oauth/token", data=CC, auth=("svc", "wrong-secret-value"))
    token = ok.json()["access_token"]
    assert token not in caplog.text
    assert SVC_SECRET not in caplog.text
    assert "wrong-secret-value" not in caplog.text


async def test_non_http_scopes_reach_the_app(config: Config) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] == "lifespan":
            await not_found_app(scope, receive, send)
        elif scope["type"] == "http":
            await PlainTextResponse("ok")(scope, receive, send)

    wrapped = AttestoMiddleware(app, config)
    async with Lifespan(wrapped), http_client(wrapped) as http:
        assert (await http.get("/x")).text == "ok"
    assert seen == ["lifespan", "http"]


async def test_plain_http_through_a_proxy_to_a_loopback_bound_server_is_refused(
    make_config: Callable[..., Config],
) -> None:
    app = AttestoMiddleware(not_found_app, make_config(issuer="https://as.example.com"))
    body = {"type": "http.request", "body": b"grant_type=client_credentials", "more_body": False}
    # The server binds loopback; the client addressed a public host.
    loopback_bound = ("127.0.0.1", 8000)
    sent = await _raw(app, [dict(body)], [(b"host", b"as.example.com"), BASIC], server=loopback_bound)
    assert sent[0]["status"] == 400
    assert b"HTTPS is required" in sent[1]["body"]
    sent = await _raw(app, [dict(body)], [(b"host", b"[::1]:8000"), BASIC], server=loopback_bound)
    assert sent[0]["status"] == 200


async def _raw(
    app: AttestoMiddleware,
    messages: list[dict[str, Any]],
    headers: list[tuple[bytes, bytes]],
    *,
    server: tuple[str, int] = ("127.0.0.1", 80),
    on_send: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One POST to the token path by hand: ``messages`` are what ``receive`` hands out, then
    a disconnect; returns what was sent (each also handed to ``on_send`` as it is)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if on_send is not None:
            on_send(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/oauth/token",
        "scheme": "http",
        "server": server,
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded"), *headers],
    }
    await app(scope, receive, send)
    return sent


async def test_a_client_gone_before_its_body_ended_is_not_answered_and_changes_nothing(
    make_config: Callable[..., Config],
) -> None:
    # RFC 9112 §8: a body cut short "is incomplete"; acting on its first part could spend the
    # code for a client that is gone. Nothing is answered, emitted or stored.
    hooks = Recorder()
    config = make_config(hooks=hooks)
    app = AttestoMiddleware(not_found_app, config)
    verifier, challenge = pkce_pair()
    code = await issue_code(
        config,
        client_id="spa",
        redirect_uri="http://localhost:3000/cb",
        subject="alice",
        scope="openid",
        code_challenge=challenge,
        auth_time=int(config.clock()) - 30,
    )
    body = urlencode(
        {
            "grant_type": "authorization_code",
            "client_id": "spa",
            "code": code,
            "redirect_uri": "http://localhost:3000/cb",
            "code_verifier": verifier,
        }
    ).encode()
    cut = body.index(b"&code_verifier")
    for ending in ({"type": "http.disconnect"}, None):  # a disconnect message, or receive's own
        first: list[dict[str, Any]] = [{"type": "http.request", "body": body[:cut], "more_body": True}]
        assert await _raw(app, first + ([ending] if ending else []), []) == []
    assert hooks.events == []
    # The code was not spent: the whole request redeems it.
    whole = [
        {"type": "http.request", "body": body[:cut], "more_body": True},
        {"type": "http.request", "body": body[cut:], "more_body": False},
    ]
    sent = await _raw(app, whole, [])
    assert sent[0]["status"] == 200, sent
    assert [e.name for e in hooks.events] == ["token_issued"]


@pytest.mark.parametrize("length", [b"9" * 5000, b"0" * 4999 + b"9", b"1" + b"0" * 19, b"18446744073709551616"])
async def test_an_absurd_content_length_is_413_or_read_never_a_500(
    make_config: Callable[..., Config], length: bytes
) -> None:
    app = AttestoMiddleware(not_found_app, make_config())
    body = b"grant_type=client_credentials"
    sent = await _raw(app, [{"type": "http.request", "body": body}], [(b"content-length", length), BASIC])
    # Leading zeros make the second one 9: a length within the limit, so the body is read.
    assert sent[0]["status"] == (200 if length.lstrip(b"0") == b"9" else 413), sent


async def test_two_authorization_headers_are_invalid_request(make_config: Callable[..., Config]) -> None:
    # RFC 9110 §11.6.2: one Authorization field; RFC 6749 §2.3: one authentication per request.
    app = AttestoMiddleware(not_found_app, make_config())
    body = [{"type": "http.request", "body": b"grant_type=client_credentials"}]
    for headers in ([BASIC, (b"authorization", b"Bearer x")], [(b"authorization", b"Bearer x"), BASIC], [BASIC, BASIC]):
        sent = await _raw(app, list(body), headers)
        assert sent[0]["status"] == 400, headers
        assert msgspec.json.decode(sent[1]["body"])["error"] == "invalid_request"
    assert (await _raw(app, list(body), [BASIC]))[0]["status"] == 200


async def test_a_failing_load_client_hook_is_a_500_server_error_with_its_event(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    # The host's client store down: a logged server_error and a token_denied event, never an
    # exception out of the middleware (which would leave the answer to the ASGI server).
    class Down(Recorder):
        async def load_client(self, config: Config, client_id: str) -> Client | None:
            raise RuntimeError("client DB down")

    hooks = Down()
    app = AttestoMiddleware(not_found_app, make_config(hooks=hooks))
    sent = await _raw(app, [{"type": "http.request", "body": b"grant_type=client_credentials"}], [BASIC])
    assert sent[0]["status"] == 500
    assert msgspec.json.decode(sent[1]["body"]) == {
        "error": "server_error",
        "error_description": "The server could not complete the request.",
    }
    [event] = hooks.events
    assert (event.name, event.data["error"]) == ("token_denied", "server_error")
    assert "client DB down" in caplog.text  # logged for the operator, not sent


async def test_an_event_sink_set_after_start_up_gets_every_event(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    # hooks.md: on_event is looked up at each call, and a sink of the host's own gets every
    # event whatever the log level (INFO is off here).
    caplog.set_level(logging.WARNING, logger="attesto_asgi.events")
    config = make_config(hooks=Hooks())
    app = AttestoMiddleware(not_found_app, config)
    got: list[str] = []

    async def sink(event: Event) -> None:
        got.append(event.name)

    config.hooks.on_event = sink  # type: ignore[method-assign]
    sent = await _raw(app, [{"type": "http.request", "body": b"grant_type=client_credentials"}], [BASIC])
    assert sent[0]["status"] == 200
    assert got == ["token_issued"]
