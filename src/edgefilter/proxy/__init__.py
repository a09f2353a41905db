"""Edge proxy mode: the analytics host in front of a Rybbit upstream, filtering every hit.

Needs the ``proxy`` extra (Starlette, uvicorn, httpx). ``edgefilter proxy`` serves it.
"""

from ._app import create_proxy_app
from ._relay import INGEST_SURFACE, Relay, SurfaceRoute

__all__ = ["INGEST_SURFACE", "Relay", "SurfaceRoute", "create_proxy_app"]
