"""The example Litestar service (see app.py)."""

from .app import create_app

__all__ = ["create_app"]
