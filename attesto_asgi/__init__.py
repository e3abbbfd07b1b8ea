"""attesto-asgi: an OAuth 2.0 / OpenID Connect token endpoint for any ASGI application."""

from ._secrets import hash_client_secret
from .asgi.middleware import AttestoMiddleware
from .config import Config
from .core.codes import issue_code
from .core.issuer import issue
from .core.verify import InvalidToken, verify_access_token
from .errors import OAuthError, StoreUnavailable
from .events import Event
from .hooks import Hooks
from .keys import KeySet
from .memory import MemoryStore
from .model import Client, Denied, Issued, TokenRequest, VerifiedToken
from .store import Store, open_store

__all__ = [
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
]
