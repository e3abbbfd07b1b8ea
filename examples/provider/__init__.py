"""The example OpenID Provider (see app.py)."""

from .app import ProviderHooks, create_app
from .settings import ProviderSettings, RegisteredClient

__all__ = ["ProviderHooks", "ProviderSettings", "RegisteredClient", "create_app"]
