"""The Python peers, each behind a raw-ASGI adapter and signing ES256 JWT access tokens.

Both are used as plainly as their documentation shows (dict storage, their own request
objects, their own grant classes). The adapters use no web framework, so a peer is not
slowed by one: the comparison is between token-endpoint libraries.
"""
