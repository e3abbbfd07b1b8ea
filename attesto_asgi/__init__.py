"""attesto-asgi: an OAuth 2.0 / OpenID Connect token endpoint for any ASGI application."""

from .errors import OAuthError, StoreUnavailable
from .events import Event
from .model import Client, Denied, Issued, TokenRequest
from .store import Store, open_store

__all__ = [
    "Client",
    "Denied",
    "Event",
    "Issued",
    "OAuthError",
    "Store",
    "StoreUnavailable",
    "TokenRequest",
    "open_store",
]
