"""The exceptions edgefilter raises, all at setup or refresh time, never per hit.

Each one subclasses the builtin it refines, so ``except ValueError`` still works::

    EdgeFilterError                               base of everything edgefilter raises
    ├── ConfigError(ValueError)                   a site config or rule entry is malformed
    ├── GeoIPError(OSError)                       a GeoIP database cannot be opened or read
    ├── ApiError                                  the reference server refuses a request
    └── SitesApiError                             a Sites API call failed
        ├── ApiAuthError(PermissionError)         401 or 403: bad key, or no access
        ├── SiteNotFoundError(LookupError)        404: no such site (or organisation)
        ├── ApiRequestError(ValueError)           400 or 413: the API refused the request
        ├── ApiServerError                        5xx, or an unexpected status
        ├── MalformedResponseError(ValueError)    the body is not the JSON the spec says
        ├── ApiTimeoutError(TimeoutError)         no answer in time
        └── ApiUnreachableError(ConnectionError)  no connection (refused, DNS, reset)

The per-hit path (``EdgeFilter.should_track``) raises none of them: every odd input maps
to a documented ``Decision``. ``ApiError`` never leaves the reference server
(``edgefilter.server``): it is raised inside a request and answered as a 4xx; the client
side sees that answer as one of the ``SitesApiError`` kinds.
"""

from __future__ import annotations


class EdgeFilterError(Exception):
    """Base class of every exception edgefilter raises."""


class ConfigError(EdgeFilterError, ValueError):
    """A site config, or one of its rule entries, is malformed."""


class GeoIPError(EdgeFilterError, OSError):
    """A GeoIP database cannot be opened or is corrupt."""


class ApiError(EdgeFilterError):
    """The reference server refuses a request: answered ``status`` with ``error``.

    The answer is ``{"success": false, "error": ..., "details": [...]}``; ``details`` is
    None when the answer has none.
    """

    def __init__(self, status: int, error: str, details: list[str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details


class SitesApiError(EdgeFilterError):
    """A Sites API call failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ApiAuthError(SitesApiError, PermissionError):
    """401 or 403: the API key is missing, unknown, or has no access to the site."""


class SiteNotFoundError(SitesApiError, LookupError):
    """404: the site (or organisation) does not exist."""


class ApiRequestError(SitesApiError, ValueError):
    """400 or 413: the API refused the request; ``details`` lists its reasons."""

    @property
    def details(self) -> list[str]:
        """The ``details`` of the error answer (empty when it had none)."""
        body = self.body
        details = body.get("details") if isinstance(body, dict) else None
        return [str(item) for item in details] if isinstance(details, list) else []


class ApiServerError(SitesApiError):
    """5xx, or a status the API does not document."""


class MalformedResponseError(SitesApiError, ValueError):
    """The answer is not the JSON the Sites API spec describes."""


class ApiTimeoutError(SitesApiError, TimeoutError):
    """The API did not answer in time."""


class ApiUnreachableError(SitesApiError, ConnectionError):
    """No connection to the API could be made or kept."""
