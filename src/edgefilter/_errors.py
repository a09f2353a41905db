"""The exceptions edgefilter raises, all at setup or refresh time, never per hit.

Each one subclasses the builtin it refines, so ``except ValueError`` still works::

    EdgeFilterError                      base of everything edgefilter raises
    ├── ConfigError(ValueError)          a site config or rule entry is malformed
    └── GeoIPError(OSError)              a GeoIP database cannot be opened or read

The per-hit path (``EdgeFilter.should_track``) raises none of them: every odd input maps
to a documented ``Decision``.
"""

from __future__ import annotations


class EdgeFilterError(Exception):
    """Base class of every exception edgefilter raises."""


class ConfigError(EdgeFilterError, ValueError):
    """A site config, or one of its rule entries, is malformed."""


class GeoIPError(EdgeFilterError, OSError):
    """A GeoIP database cannot be opened or is corrupt."""
