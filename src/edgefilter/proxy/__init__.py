"""Edge proxy mode: a collector that filters hits and forwards the rest to a Rybbit upstream.

Needs the ``proxy`` extra (Starlette, uvicorn, httpx). ``edgefilter proxy`` serves it.
"""

from ._app import create_proxy_app, upstream_headers

__all__ = ["create_proxy_app", "upstream_headers"]
