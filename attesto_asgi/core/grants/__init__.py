"""One module per grant, each exporting ``GRANT_TYPE``, ``PARAMETERS``,
``CONFIDENTIAL_ONLY`` and ``async def handle(ctx, request) -> dict`` (the §5.1 body).
The registry is the dict literal in ``attesto_asgi.core.issuer``."""
