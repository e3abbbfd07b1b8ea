"""RFC 8693 token exchange through HTTP: impersonation, delegation chains, policy, revocation."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest

from attesto_asgi import (
    AttestoMiddleware,
    Client,
    Config,
    InvalidToken,
    KeySet,
    OAuthError,
    VerifiedToken,
    verify_access_token,
)
from attesto_asgi.core.grants.token_exchange import EXCHANGE_JWT_TYP, GRANT_TYPE, MAX_ACT_DEPTH
from attesto_asgi.core.tokens import mint_access_token
from attesto_asgi.core.verify import ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE, TrustedKeys, verify_jwt
from attesto_asgi.errors import INVALID_SCOPE
from tests.families import (
    API,
    CREDENTIALS,
    WEB_SECRET,
    FamilyHooks,
    code_grant,
    context,
    family_clients,
    start_family,
)
from tests.helpers import ISSUER, FakeClock, http_client, jwt_claims, not_found_app, standard_clients

B_API = "https://b.example.com"
C_API = "https://c.example.com"
D_API = "https://d.example.com"
SECRETS = {
    **CREDENTIALS,
    "svc-b": "svc-b-secret-0123456789abcdefghijklmnopqrstuvwxyz",
    "svc-c": "svc-c-secret-0123456789abcdefghijklmnopqrstuvwxyz",
    "outsider": "outsider-secret-0123456789abcdefghijklmnopqrstuvwxyz",
}
GRANTS = ("client_credentials", GRANT_TYPE)


def exchange_clients() -> tuple[Client, ...]:
    web = next(c for c in family_clients() if c.client_id == "web")
    return (
        *standard_clients(),
        *(c for c in family_clients() if c.client_id != "web"),
        # The user's client may also exchange (its ID token for an access token to its API).
        msgspec.structs.replace(web, grant_types=(*web.grant_types, GRANT_TYPE)),
        # B serves B_API and may call C; C serves C_API and may call D.
        Client(client_id="svc-b", client_secret=SECRETS["svc-b"], grant_types=GRANTS, audiences=(B_API, C_API)),
        Client(client_id="svc-c", client_secret=SECRETS["svc-c"], grant_types=GRANTS, audiences=(C_API, D_API)),
        # Holds the grant but serves nothing the user's token was issued for.
        Client(client_id="outsider", client_secret=SECRETS["outsider"], grant_types=GRANTS, audiences=(D_API,)),
        Client(client_id="pub", token_endpoint_auth_method="none", grant_types=(GRANT_TYPE,), audiences=(D_API,)),
    )


@pytest.fixture
def hooks() -> FamilyHooks:
    return FamilyHooks()


@pytest.fixture
def cfg(make_config: Callable[..., Config], hooks: FamilyHooks) -> Config:
    return make_config(clients=exchange_clients(), hooks=hooks)


@pytest.fixture
async def http(cfg: Config) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(AttestoMiddleware(not_found_app, cfg)) as c:
        yield c


async def exchange(
    http: httpx.AsyncClient,
    client_id: str,
    subject_token: str | None,
    subject_token_type: str | None = ACCESS_TOKEN_TYPE,
    **form: Any,
) -> httpx.Response:
    data: dict[str, Any] = {"grant_type": GRANT_TYPE, **form}
    if subject_token is not None:
        data["subject_token"] = subject_token
    if subject_token_type is not None:
        data["subject_token_type"] = subject_token_type
    auth = (client_id, SECRETS[client_id]) if client_id in SECRETS else None
    if auth is None:
        data["client_id"] = client_id
    return await http.post("/oauth/token", data=data, auth=auth or httpx.USE_CLIENT_DEFAULT)


async def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error(response: httpx.Response) -> str:
    assert response.status_code in (400, 401), response.text
    code: str = response.json()["error"]
    return code


async def own_token(http: httpx.AsyncClient, client_id: str) -> str:
    """The service's own client_credentials token: its actor token."""
    r = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, SECRETS[client_id]))
    token: str = (await ok(r))["access_token"]
    return token


async def active(http: httpx.AsyncClient, token: str) -> bool:
    r = await http.post("/oauth/introspect", data={"token": token}, auth=("rs", CREDENTIALS["rs"]))
    value: bool = (await ok(r))["active"]
    return value


def header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


# ------------------------------------------------------------------ impersonation


async def test_impersonation_exchange_issues_a_narrower_token_in_the_same_family(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks, clock: FakeClock
) -> None:
    user = await start_family(cfg, audience=(B_API,))
    clock.advance(100)
    body = await ok(await exchange(http, "svc-b", user.access_token, audience=C_API, scope="read"))
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in", "scope"}
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE  # RFC 8693 §2.2.1
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "read"
    # Never outlives the subject token.
    assert body["expires_in"] == user.access_claims["exp"] - int(clock.now) == cfg.access_token_ttl - 100
    claims = jwt_claims(body["access_token"])
    assert header(body["access_token"])["typ"] == "at+jwt"
    assert (claims["sub"], claims["client_id"], claims["aud"]) == ("alice", "svc-b", C_API)
    assert claims["exp"] == user.access_claims["exp"]
    assert claims["fid"] == user.family_id
    assert "act" not in claims
    verified = await verify_access_token(cfg, body["access_token"], audience=C_API, store=cfg.backend)
    assert verified.family_id == user.family_id
    (event,) = hooks.named("token_exchanged")
    assert event.client_id == "svc-b"
    assert event.subject == "alice"
    assert event.data["actor"] is None
    assert event.data["audience"] == [C_API]
    assert event.data["family_id"] == user.family_id
    assert event.data["jti"] == claims["jti"]
    assert user.access_token not in repr(event)
    assert body["access_token"] not in repr(event)


async def test_scope_defaults_to_the_subjects_and_only_narrows(http: httpx.AsyncClient, cfg: Config) -> None:
    user = await start_family(cfg, audience=(B_API,), scope=("read", "write"))
    body = await ok(await exchange(http, "svc-b", user.access_token, audience=C_API))
    assert body["scope"] == "read write"
    wider = await exchange(http, "svc-b", user.access_token, audience=C_API, scope="read admin")
    assert error(wider) == "invalid_scope"


async def test_audience_and_resource_together_name_the_targets(http: httpx.AsyncClient, cfg: Config) -> None:
    user = await start_family(cfg, audience=(B_API,))
    r = await http.post(
        "/oauth/token",
        content=(
            f"grant_type={GRANT_TYPE}&subject_token={user.access_token}"
            f"&subject_token_type={ACCESS_TOKEN_TYPE}&audience={B_API}&resource={C_API}&audience={C_API}"
        ).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=("svc-b", SECRETS["svc-b"]),
    )
    assert jwt_claims((await ok(r))["access_token"])["aud"] == [B_API, C_API]


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"audience": D_API}, "invalid_target"),  # not among svc-b's audiences
        ({"resource": D_API}, "invalid_target"),
        ({"resource": "c.example.com"}, "invalid_target"),  # RFC 8707 §2: not an absolute URI
        ({"resource": C_API + "#frag"}, "invalid_target"),
        ({}, "invalid_target"),  # no target: the default audience (svc-b itself) is not one it may call
    ],
)
async def test_targets_outside_the_clients_audiences_are_invalid_target(
    http: httpx.AsyncClient, cfg: Config, form: dict[str, str], code: str
) -> None:
    user = await start_family(cfg, audience=(B_API,))
    assert error(await exchange(http, "svc-b", user.access_token, **form)) == code


# ------------------------------------------------------------------ delegation


async def test_two_hop_delegation_chain_nests_act_and_revocation_reaches_every_hop(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks
) -> None:
    user = await start_family(cfg, audience=(B_API,))
    # Service B, holding alice's token, calls C on her behalf, acting as itself.
    b_token = await own_token(http, "svc-b")
    hop1 = await ok(
        await exchange(
            http, "svc-b", user.access_token, actor_token=b_token, actor_token_type=ACCESS_TOKEN_TYPE, audience=C_API
        )
    )
    hop1_claims = jwt_claims(hop1["access_token"])
    assert hop1_claims["sub"] == "alice"
    assert hop1_claims["act"] == {"sub": "svc-b"}
    # Service C, holding that token, calls D on alice's behalf, acting as itself.
    c_token = await own_token(http, "svc-c")
    hop2 = await ok(
        await exchange(
            http, "svc-c", hop1["access_token"], actor_token=c_token, actor_token_type=ACCESS_TOKEN_TYPE, audience=D_API
        )
    )
    hop2_claims = jwt_claims(hop2["access_token"])
    assert hop2_claims["sub"] == "alice"
    assert hop2_claims["client_id"] == "svc-c"
    assert hop2_claims["act"] == {"sub": "svc-c", "act": {"sub": "svc-b"}}  # RFC 8693 §4.1: prior actor nested
    assert hop2_claims["fid"] == user.family_id
    assert [e.data["actor"] for e in hooks.named("token_exchanged")] == ["svc-b", "svc-c"]

    # Introspection reports the chain; revoking alice's refresh token ends every hop.
    r = await http.post("/oauth/introspect", data={"token": hop2["access_token"]}, auth=("rs", CREDENTIALS["rs"]))
    assert r.json()["act"] == {"sub": "svc-c", "act": {"sub": "svc-b"}}
    tokens = [user.access_token, hop1["access_token"], hop2["access_token"]]
    assert [await active(http, t) for t in tokens] == [True, True, True]
    revoked = await http.post("/oauth/revoke", data={"token": user.refresh_token}, auth=("web", WEB_SECRET))
    assert revoked.status_code == 200
    assert [await active(http, t) for t in tokens] == [False, False, False]
    # And the exchanged tokens can no longer be exchanged.
    again = await exchange(http, "svc-c", hop1["access_token"], audience=D_API)
    assert error(again) == "invalid_request"


async def test_impersonation_keeps_the_subjects_delegation_chain(http: httpx.AsyncClient, cfg: Config) -> None:
    user = await start_family(cfg, audience=(B_API,))
    b_token = await own_token(http, "svc-b")
    hop1 = await ok(
        await exchange(
            http, "svc-b", user.access_token, actor_token=b_token, actor_token_type=ACCESS_TOKEN_TYPE, audience=C_API
        )
    )
    hop2 = await ok(await exchange(http, "svc-c", hop1["access_token"], audience=D_API))
    assert jwt_claims(hop2["access_token"])["act"] == {"sub": "svc-b"}  # never laundered away


async def test_delegated_token_never_outlives_the_actor_token(
    http: httpx.AsyncClient, cfg: Config, clock: FakeClock
) -> None:
    b_token = await own_token(http, "svc-b")
    clock.advance(600)
    user = await start_family(cfg, audience=(B_API,))
    body = await ok(
        await exchange(
            http, "svc-b", user.access_token, actor_token=b_token, actor_token_type=ACCESS_TOKEN_TYPE, audience=C_API
        )
    )
    assert body["expires_in"] == cfg.access_token_ttl - 600
    assert jwt_claims(body["access_token"])["exp"] == jwt_claims(b_token)["exp"]


async def test_actor_token_and_type_go_together(http: httpx.AsyncClient, cfg: Config) -> None:
    user = await start_family(cfg, audience=(B_API,))
    b_token = await own_token(http, "svc-b")
    alone = await exchange(http, "svc-b", user.access_token, actor_token=b_token, audience=C_API)
    assert error(alone) == "invalid_request"
    typed = await exchange(http, "svc-b", user.access_token, actor_token_type=ACCESS_TOKEN_TYPE, audience=C_API)
    assert error(typed) == "invalid_request"


async def test_an_actor_token_issued_to_another_client_is_refused_by_default(
    http: httpx.AsyncClient, cfg: Config
) -> None:
    user = await start_family(cfg, audience=(B_API,))
    c_token = await own_token(http, "svc-c")  # B cannot act as C
    r = await exchange(
        http, "svc-b", user.access_token, actor_token=c_token, actor_token_type=ACCESS_TOKEN_TYPE, audience=C_API
    )
    assert error(r) == "invalid_request"


class MayActHooks(FamilyHooks):
    """Puts a may_act claim (RFC 8693 §4.4) naming ``allowed`` into alice's access tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.allowed = {"sub": "svc-b"}

    async def access_token_claims(self, client: Client, subject: str, scope: tuple[str, ...]) -> dict[str, Any]:
        return {"may_act": self.allowed} if subject == "alice" else {}


async def test_may_act_that_does_not_name_the_actor_is_invalid_request(
    make_config: Callable[..., Config],
) -> None:
    hooks = MayActHooks()
    config = make_config(clients=exchange_clients(), hooks=hooks)
    user = await start_family(config, audience=(B_API, C_API))
    assert jwt_claims(user.access_token)["may_act"] == {"sub": "svc-b"}
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        c_token = await own_token(http, "svc-c")
        by_c = await exchange(
            http, "svc-c", user.access_token, actor_token=c_token, actor_token_type=ACCESS_TOKEN_TYPE, audience=D_API
        )
        assert error(by_c) == "invalid_request"
        assert "actor" in by_c.json()["error_description"]
        # Impersonation by C is refused too: C is the acting party, and may_act names B.
        assert error(await exchange(http, "svc-c", user.access_token, audience=D_API)) == "invalid_request"
        b_token = await own_token(http, "svc-b")
        by_b = await exchange(
            http, "svc-b", user.access_token, actor_token=b_token, actor_token_type=ACCESS_TOKEN_TYPE, audience=C_API
        )
        assert jwt_claims((await ok(by_b))["access_token"])["act"] == {"sub": "svc-b"}
        hooks.allowed = {"sub": "svc-b", "iss": "https://elsewhere.example"}  # every member must match
        other = await start_family(config, audience=(B_API,))
        b_token = await own_token(http, "svc-b")
        mismatch = await exchange(
            http, "svc-b", other.access_token, actor_token=b_token, actor_token_type=ACCESS_TOKEN_TYPE, audience=C_API
        )
        assert error(mismatch) == "invalid_request"


async def test_a_delegation_chain_is_bounded(http: httpx.AsyncClient, cfg: Config) -> None:
    web = cfg.client("web")
    assert web is not None
    act: dict[str, Any] = {"sub": "svc-0"}
    for i in range(1, MAX_ACT_DEPTH):
        act = {"sub": f"svc-{i}", "act": act}
    deep = await mint_access_token(
        context(cfg, web), client=web, subject="alice", scope=("read",), audience=(B_API,), act=act
    )
    b_token = await own_token(http, "svc-b")
    form = {"actor_token": b_token, "actor_token_type": ACCESS_TOKEN_TYPE, "audience": C_API}
    assert error(await exchange(http, "svc-b", deep.token, **form)) == "invalid_request"  # one hop too many
    shallower = await mint_access_token(
        context(cfg, web), client=web, subject="alice", scope=("read",), audience=(B_API,), act=act["act"]
    )
    assert jwt_claims((await ok(await exchange(http, "svc-b", shallower.token, **form)))["access_token"])["act"]


# ------------------------------------------------------------------ policy


async def test_default_policy_refuses_a_client_the_subject_token_was_not_issued_for(
    http: httpx.AsyncClient, cfg: Config
) -> None:
    user = await start_family(cfg, audience=(B_API,))
    r = await exchange(http, "outsider", user.access_token, audience=D_API)
    assert error(r) == "invalid_request"
    assert r.json()["error_description"] == "The subject token may not be exchanged by this client."
    # A token issued to svc-c for itself is not B's to exchange either.
    assert error(await exchange(http, "svc-b", await own_token(http, "svc-c"), audience=C_API)) == "invalid_request"


class PolicyHooks(FamilyHooks):
    def __init__(self, answer: bool | OAuthError) -> None:
        super().__init__()
        self.answer = answer
        self.calls: list[tuple[str, str, str | None, tuple[str, ...], tuple[str, ...]]] = []

    async def authorize_exchange(
        self,
        client: Client,
        subject: VerifiedToken,
        actor: VerifiedToken | None,
        audience: tuple[str, ...],
        scope: tuple[str, ...],
    ) -> bool:
        self.calls.append((client.client_id, subject.subject, actor and actor.subject, audience, scope))
        if isinstance(self.answer, OAuthError):
            raise self.answer
        return self.answer


async def test_authorize_exchange_decides(make_config: Callable[..., Config]) -> None:
    for answer, expected in ((True, 200), (False, "invalid_request"), (OAuthError(INVALID_SCOPE), "invalid_scope")):
        hooks = PolicyHooks(answer)
        config = make_config(clients=exchange_clients(), hooks=hooks)
        user = await start_family(config, audience=("https://elsewhere.example",))
        async with http_client(AttestoMiddleware(not_found_app, config)) as http:
            r = await exchange(http, "outsider", user.access_token, audience=D_API, scope="read")
        assert (r.status_code if r.status_code == 200 else error(r)) == expected
        assert hooks.calls == [("outsider", "alice", None, (D_API,), ("read",))]


# ------------------------------------------------------------------ the subject token


@pytest.mark.parametrize(
    "form",
    [
        {"subject_token": None},
        {"subject_token": ""},
        {"subject_token_type": None},
        {"subject_token_type": ""},
        {"subject_token": None, "subject_token_type": None},
    ],
)
async def test_missing_subject_token_never_falls_back_to_the_client(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks, form: dict[str, Any]
) -> None:
    user = await start_family(cfg, audience=(B_API,))
    args: dict[str, Any] = {"subject_token": user.access_token, "subject_token_type": ACCESS_TOKEN_TYPE, **form}
    r = await exchange(http, "svc-b", args.pop("subject_token"), args.pop("subject_token_type"), audience=C_API)
    assert error(r) == "invalid_request"
    assert hooks.named("token_exchanged") == []
    assert "access_token" not in r.json()


async def test_the_declared_type_must_match_the_token(http: httpx.AsyncClient, cfg: Config) -> None:
    tokens, _ = await code_grant(http, cfg, "openid offline_access read", resource=(API,))
    as_id_token = await exchange(http, "web", tokens["access_token"], ID_TOKEN_TYPE, audience=API)
    assert error(as_id_token) == "invalid_request"
    as_access_token = await exchange(http, "web", tokens["id_token"], ACCESS_TOKEN_TYPE, audience=API)
    assert error(as_access_token) == "invalid_request"
    for other in ("urn:ietf:params:oauth:token-type:refresh_token", "urn:ietf:params:oauth:token-type:saml2", "x"):
        assert error(await exchange(http, "web", tokens["refresh_token"], other, audience=API)) == "invalid_request"


async def test_an_id_token_is_exchanged_by_its_audience_and_grants_no_scope(
    http: httpx.AsyncClient, cfg: Config
) -> None:
    tokens, _ = await code_grant(http, cfg, "openid offline_access read")
    id_claims = jwt_claims(tokens["id_token"])
    body = await ok(await exchange(http, "web", tokens["id_token"], ID_TOKEN_TYPE, audience=API))
    assert "scope" not in body
    claims = jwt_claims(body["access_token"])
    assert (claims["sub"], claims["client_id"], claims["aud"]) == ("alice", "web", API)
    assert claims["auth_time"] == id_claims["auth_time"]  # the real authentication time carries over
    assert claims["fid"] == id_claims["fid"]
    assert error(await exchange(http, "web", tokens["id_token"], ID_TOKEN_TYPE, audience=API, scope="read")) == (
        "invalid_scope"
    )
    # The ID token's family is revoked with its refresh token: the ID token is no longer exchangeable.
    await http.post("/oauth/revoke", data={"token": tokens["refresh_token"]}, auth=("web", WEB_SECRET))
    refused = await exchange(http, "web", tokens["id_token"], ID_TOKEN_TYPE, audience=API)
    assert error(refused) == "invalid_request"
    assert refused.json()["error_description"] == "The subject_token is invalid."
    assert not await active(http, body["access_token"])


async def test_bad_signature_foreign_issuer_expired_and_revoked_are_invalid_request(
    http: httpx.AsyncClient, cfg: Config, make_config: Callable[..., Config], clock: FakeClock
) -> None:
    user = await start_family(cfg, audience=(B_API,))
    head, _, signature = user.access_token.split(".")
    forged_payload = base64.urlsafe_b64encode(json.dumps({**user.access_claims, "sub": "mallory"}).encode()).rstrip(
        b"="
    )
    forged = f"{head}.{forged_payload.decode()}.{signature}"
    foreign = await start_family(
        make_config(keys=KeySet.generate("ES256"), clients=exchange_clients()), audience=(B_API,)
    )
    revoked = await start_family(cfg, audience=(B_API,))
    await cfg.backend.revoke_access_token(revoked.access_claims["jti"], revoked.access_claims["exp"])
    for token in (forged, foreign.access_token, revoked.access_token, "not-a-token"):
        assert error(await exchange(http, "svc-b", token, audience=C_API)) == "invalid_request"
    clock.advance(cfg.access_token_ttl)
    assert error(await exchange(http, "svc-b", user.access_token, audience=C_API)) == "invalid_request"


async def test_a_disabled_user_cannot_be_exchanged_for(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks
) -> None:
    user = await start_family(cfg, audience=(B_API,))
    hooks.disabled.add("alice")
    assert error(await exchange(http, "svc-b", user.access_token, audience=C_API)) == "invalid_request"


# ------------------------------------------------------------------ external JWTs


EXTERNAL_ISSUER = "https://idp.partner.example"
EXTERNAL_KEYS = KeySet.generate("ES256")


class ExternalHooks(FamilyHooks):
    """Trusts one partner issuer, verifying its JWTs with the partner's keys."""

    async def verify_external_token(self, client: Client, token: str, token_type: str) -> VerifiedToken | None:
        assert token_type == JWT_TOKEN_TYPE
        try:
            found = verify_jwt(
                TrustedKeys.from_keyset(EXTERNAL_KEYS),
                token,
                token_type=ACCESS_TOKEN_TYPE,
                issuer=EXTERNAL_ISSUER,
                now=0,  # the partner's exp is checked by the grant against its own clock
                audience=(B_API,),
            )
        except InvalidToken:
            return None
        return msgspec.structs.replace(found, token_type=JWT_TOKEN_TYPE, client_id=None)


def partner_token(clock: FakeClock, **claims: Any) -> str:
    now = int(clock.now)
    payload = {
        "iss": EXTERNAL_ISSUER,
        "sub": "bob@partner",
        "aud": B_API,
        "exp": now + 60,
        "iat": now,
        "jti": "p-1",
        "client_id": "partner-app",
        "scope": "read",
        **claims,
    }
    return EXTERNAL_KEYS.signer().sign(payload, "at+jwt")


async def test_other_jwts_only_through_verify_external_token(
    make_config: Callable[..., Config], cfg: Config, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    token = partner_token(clock)
    assert error(await exchange(http, "svc-b", token, JWT_TOKEN_TYPE, audience=C_API)) == "invalid_request"  # default
    config = make_config(clients=exchange_clients(), hooks=ExternalHooks())
    async with http_client(AttestoMiddleware(not_found_app, config)) as partner_http:
        body = await ok(await exchange(partner_http, "svc-b", token, JWT_TOKEN_TYPE, audience=C_API))
        claims = jwt_claims(body["access_token"])
        assert (claims["iss"], claims["sub"], claims["client_id"], claims["scope"]) == (
            ISSUER,
            "bob@partner",
            "svc-b",
            "read",
        )
        assert "fid" not in claims  # no family of ours
        assert claims["exp"] == int(clock.now) + 60
        # The same token declared as one of ours is checked as ours, and fails.
        assert error(await exchange(partner_http, "svc-b", token, ACCESS_TOKEN_TYPE, audience=C_API)) == (
            "invalid_request"
        )
        clock.advance(60)
        assert error(await exchange(partner_http, "svc-b", token, JWT_TOKEN_TYPE, audience=C_API)) == (
            "invalid_request"
        )


# ------------------------------------------------------------------ requested_token_type and clients


async def test_requested_jwt_is_issued_as_a_non_access_token(http: httpx.AsyncClient, cfg: Config) -> None:
    user = await start_family(cfg, audience=(B_API,))
    body = await ok(
        await exchange(http, "svc-b", user.access_token, audience=C_API, requested_token_type=JWT_TOKEN_TYPE)
    )
    assert body["issued_token_type"] == JWT_TOKEN_TYPE
    assert body["token_type"] == "N_A"  # RFC 8693 §2.2.1
    assert "refresh_token" not in body
    assert header(body["access_token"])["typ"] == EXCHANGE_JWT_TYP
    with pytest.raises(InvalidToken, match="typ"):  # an API never takes it for an access token
        await verify_access_token(cfg, body["access_token"], audience=C_API)
    assert not await active(http, body["access_token"])


@pytest.mark.parametrize(
    "requested",
    [
        "urn:ietf:params:oauth:token-type:refresh_token",
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:saml2",
        "bearer",
    ],
)
async def test_other_requested_token_types_are_invalid_request(
    http: httpx.AsyncClient, cfg: Config, requested: str
) -> None:
    user = await start_family(cfg, audience=(B_API,))
    r = await exchange(http, "svc-b", user.access_token, audience=C_API, requested_token_type=requested)
    assert error(r) == "invalid_request"


async def test_public_clients_and_clients_without_the_grant_are_refused(http: httpx.AsyncClient, cfg: Config) -> None:
    user = await start_family(cfg, audience=(B_API,))
    public = await exchange(http, "pub", user.access_token, audience=D_API)
    assert error(public) == "invalid_client"
    assert error(await exchange(http, "rs", user.access_token, audience=D_API)) == "unauthorized_client"


async def test_discovery_lists_the_grant(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/.well-known/openid-configuration")).json()
    assert GRANT_TYPE in doc["grant_types_supported"]


async def test_exchanged_tokens_of_family_less_subjects_are_revoked_one_by_one(
    http: httpx.AsyncClient, cfg: Config
) -> None:
    c_token = await own_token(http, "svc-c")  # client_credentials: no family
    body = await ok(await exchange(http, "svc-c", c_token, audience=D_API))
    assert "fid" not in jwt_claims(body["access_token"])
    assert await active(http, body["access_token"])
    r = await http.post("/oauth/revoke", data={"token": body["access_token"]}, auth=("svc-c", SECRETS["svc-c"]))
    assert r.status_code == 200
    assert not await active(http, body["access_token"])
    assert await active(http, c_token)


class RevokingHooks(FamilyHooks):
    """Revokes the user's family while the exchange is minting (a concurrent revocation)."""

    def __init__(self) -> None:
        super().__init__()
        self.config: Config | None = None
        self.family_id = ""

    async def access_token_claims(self, client: Client, subject: str, scope: tuple[str, ...]) -> dict[str, Any]:
        if client.client_id == "svc-b" and self.config is not None:
            await self.config.backend.revoke_family(self.family_id, self.config.clock() + 3600)
        return {}


async def test_a_family_revoked_during_the_exchange_leaves_nothing_live(make_config: Callable[..., Config]) -> None:
    """The subject's family passed the check, then was revoked while the exchange minted: the
    exchanged token carries that family (fid), so it is inactive from the moment it exists."""
    hooks = RevokingHooks()
    config = make_config(clients=exchange_clients(), hooks=hooks)
    user = await start_family(config, audience=(B_API,))
    hooks.config, hooks.family_id = config, user.family_id
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        body = await ok(await exchange(http, "svc-b", user.access_token, audience=C_API))
        assert jwt_claims(body["access_token"])["fid"] == user.family_id
        assert not await active(http, body["access_token"])
        assert not await active(http, user.access_token)
        # Exchanging the exchanged token again is refused: its family is revoked.
        r = await exchange(http, "svc-c", body["access_token"], audience=D_API)
        assert error(r) == "invalid_request"
    (exchanged,) = hooks.named("token_exchanged")
    assert exchanged.data["family_id"] == user.family_id


async def test_a_token_sent_as_a_token_type_is_never_quoted_in_the_event(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks
) -> None:
    # A client that swaps the fields sends its token where a URN belongs: the denial's
    # reason (logged, and in the event) gives its length, never the token.
    user = await start_family(cfg, audience=(B_API,))
    swapped = await exchange(http, "svc-b", "x", user.access_token, audience=C_API)
    wanted = await exchange(http, "svc-b", user.access_token, requested_token_type=user.access_token, audience=C_API)
    assert error(swapped) == error(wanted) == "invalid_request"
    reasons = [e.data["reason"] for e in hooks.named("token_denied")]
    assert len(reasons) == 2
    assert all(user.access_token not in r and f"<{len(user.access_token)} characters>" in r for r in reasons)
    unsupported = await exchange(http, "svc-b", user.access_token, "urn:example:other", audience=C_API)
    assert error(unsupported) == "invalid_request"
    assert "'urn:example:other'" in hooks.named("token_denied")[-1].data["reason"]
