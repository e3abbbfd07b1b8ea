"""The issuer core: plain data in, plain data out. Never sees an ASGI scope, never emits."""
