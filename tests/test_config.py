"""Config validation: what is refused at start-up rather than at request time."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from attesto_asgi import Client, Config
from attesto_asgi.config import is_loopback_host
from tests.helpers import keyset


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"issuer": "http://as.example.com"}, "https"),
        ({"issuer": "https://as.example.com/?x=1"}, "query"),
        ({"refresh_grace": 301}, "refresh_grace"),
        ({"refresh_grace": -1}, "refresh_grace"),
        ({"access_token_ttl": 0}, "access_token_ttl"),
        ({"secret_key": b"short"}, "secret_key"),
        ({"store": "nosuch://x"}, "installed: .*memory"),
        ({"clients": (Client(client_id="a", client_secret="x" * 32),) * 2}, "twice"),
    ],
)
def test_bad_configuration_is_refused_at_start_up(
    make_config: Callable[..., Config], overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_config(**overrides)


def test_grace_window_without_a_shared_secret_key_warns(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="attesto_asgi.config"):
        config = make_config(refresh_grace=30)
    assert "secret_key is not set" in caplog.text
    assert len(config.secret_key) == 32
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="attesto_asgi.config"):
        make_config(refresh_grace=30, secret_key=b"k" * 32)
        make_config()
    assert caplog.text == ""


def test_repr_never_shows_the_secret_key(make_config: Callable[..., Config]) -> None:
    config = make_config(secret_key=b"s" * 32)
    assert "sss" not in repr(config)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("app.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("127.attacker.example", False),  # a DNS name, resolved by whoever asks
        ("127.0.0.1.nip.io", False),
        ("localhost.example.com", False),
        ("128.0.0.1", False),
        ("::2", False),
        ("", False),
    ],
)
def test_only_loopback_literals_and_localhost_are_loopback(host: str, loopback: bool) -> None:
    # RFC 6749 §3.2 wants TLS at the token endpoint; only loopback itself is exempt (RFC 8252
    # §8.3 literals, RFC 6761 §6.3 localhost), and a plain-HTTP issuer only there.
    assert is_loopback_host(host) is loopback
    url = f"http://{'[::1]' if host in ('::1', '[::1]') else host}/"
    if loopback:
        Config(issuer=url, keys=keyset("ES256"))
    elif host:
        with pytest.raises(ValueError, match="https"):
            Config(issuer=url, keys=keyset("ES256"))
