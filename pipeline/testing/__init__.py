"""Test suites that ship with the package, for backends written outside it (as zarr ships
``StoreTests``): subclass, provide the fixture, run with pytest."""

from .store import StoreTests, stats_document

__all__ = ["StoreTests", "stats_document"]
