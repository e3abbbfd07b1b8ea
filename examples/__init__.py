"""Runnable examples of attesto-asgi (not part of the installed package).

- ``examples.provider``: a complete OpenID Provider on Starlette (login, consent, the
  authorization endpoint, UserInfo, RP-initiated logout; token endpoint, discovery and
  JWKS by ``AttestoMiddleware``).
- ``examples.relying_party``: a web app that signs users in against the provider with
  authlib's Starlette client.
- ``examples.fastapi_api``: a FastAPI resource server that accepts the provider's access tokens.
- ``examples.litestar_app``: the middleware in front of a Litestar application.
- ``examples/custom_store``: a third-party store backend (PostgreSQL), its own distribution.
- ``python -m examples.run``: starts provider + relying party on loopback and prints the URL.
"""
