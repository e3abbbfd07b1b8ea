"""The ASGI adapter: scope/body in, ``TokenRequest`` to the core, JSON out."""
