"""``ials serve``: an HTTP JSON API in front of a :class:`ials.Recommender` bundle.

Needs the ``serve`` extra (FastAPI and uvicorn: ``pip install fastapi uvicorn``); ``import ials``
never imports it. :func:`create_app` builds the ASGI application, :func:`run` serves it with
uvicorn.
"""

from __future__ import annotations

from .app import create_app, run

__all__ = ["create_app", "run"]
