"""The public surface is deliberate: adding or removing a name must change this test."""

import attesto_asgi

EXPECTED = {
    "AttestoMiddleware",
    "Client",
    "Config",
    "Denied",
    "Event",
    "Hooks",
    "InvalidToken",
    "Issued",
    "KeySet",
    "MemoryStore",
    "OAuthError",
    "Store",
    "StoreUnavailable",
    "TokenRequest",
    "VerifiedToken",
    "hash_client_secret",
    "issue",
    "issue_code",
    "open_store",
    "verify_access_token",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(attesto_asgi.__all__) == EXPECTED
    assert len(attesto_asgi.__all__) == len(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in attesto_asgi.__all__:
        assert getattr(attesto_asgi, name) is not None


def test_no_undeclared_public_names() -> None:
    public = {n for n in vars(attesto_asgi) if not n.startswith("_")}
    # Subpackages are importable but not part of __all__.
    modules = {n for n in public if type(getattr(attesto_asgi, n)).__name__ == "module"}
    assert public - modules == EXPECTED
