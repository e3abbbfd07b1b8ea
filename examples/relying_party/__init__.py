"""The example relying party (see app.py)."""

from .app import RPSettings, create_app

__all__ = ["RPSettings", "create_app"]
