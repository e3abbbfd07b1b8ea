"""Discovery metadata (RFC 8414, OIDC Discovery 1.0) and the JWKS document, built once."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from ..config import Config
from ..core.client_auth import ASSERTION_ALGS
from ..core.issuer import GRANTS
from ..model import AUTH_METHODS

__all__ = ["metadata", "metadata_documents"]

log = logging.getLogger("attesto_asgi.discovery")

# What client assertions are verified with (core/client_auth.py), HS384 and HS512 included.
_JWT_AUTH_ALGS = ASSERTION_ALGS


def metadata(config: Config) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": config.issuer,
        "token_endpoint": config.token_endpoint,
        "jwks_uri": config.endpoint(config.jwks_path),
        "grant_types_supported": sorted(GRANTS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(_JWT_AUTH_ALGS),
        # RFC 8414 §2: the same client authentication serves revocation (RFC 7009) and
        # introspection (RFC 7662); introspection needs real authentication, so not "none".
        "revocation_endpoint": config.endpoint(config.revocation_path),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(_JWT_AUTH_ALGS),
        "introspection_endpoint": config.endpoint(config.introspection_path),
        "introspection_endpoint_auth_methods_supported": [m for m in AUTH_METHODS if m != "none"],
        "introspection_endpoint_auth_signing_alg_values_supported": list(_JWT_AUTH_ALGS),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(config.keys.algorithms),
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
    }
    scopes = sorted({s for c in config.clients for s in c.scope})
    if scopes:
        doc["scopes_supported"] = scopes
    if config.authorization_endpoint:
        doc["authorization_endpoint"] = config.authorization_endpoint
    elif any("authorization_code" in c.grant_types for c in config.clients):
        # RFC 8414 §2 / OIDC Discovery §3: REQUIRED while a grant uses the authorization
        # endpoint; it is the host's page, so only the host can name it.
        log.warning("Config.authorization_endpoint is not set: discovery metadata lacks it (RFC 8414 §2)")
    if config.userinfo_endpoint:
        doc["userinfo_endpoint"] = config.userinfo_endpoint
    doc.update(config.extra_metadata)
    return doc


def metadata_documents(config: Config) -> dict[str, dict[str, Any]]:
    """ASGI path -> JSON document. OIDC Discovery §4: ``<issuer>/.well-known/openid-configuration``;
    RFC 8414 §3: ``/.well-known/oauth-authorization-server<issuer path>``."""
    # ASGI's scope["path"] is percent-decoded: so are the routes.
    issuer_path = unquote(urlsplit(config.issuer).path.rstrip("/"))
    doc = metadata(config)
    return {
        f"{issuer_path}/.well-known/openid-configuration": doc,
        f"/.well-known/oauth-authorization-server{issuer_path}": doc,
        config.jwks_path: config.keys.public_jwks(),
    }
