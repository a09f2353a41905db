"""The reference Sites API server: every endpoint of Rybbit's Sites API, as a Starlette app.

Needs the ``server`` extra (Starlette, uvicorn, SQLAlchemy, idna; ``postgres`` adds
psycopg). ``create_app(db_url)`` builds the app; ``edgefilter serve-api`` serves it. The
app lives in ``_app`` (where it differs from Rybbit, and why), the storage in ``_store``,
the versioned rules feed and its push in ``_feed`` and the OpenAPI document in
``_openapi``.
"""

from ._app import ApiError, SitesApi, create_app, normalize_domain

__all__ = ["ApiError", "SitesApi", "create_app", "normalize_domain"]
