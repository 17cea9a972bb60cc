"""The stats-store conformance suite: what every backend must do, through its public API.

Subclass :class:`StoreTests` and give it a ``store`` fixture that returns a fresh, empty,
writable store (after :func:`~pipeline.store.writable_store`) of your backend::

    class TestMyStore(StoreTests):
        @pytest.fixture
        def store(self, tmp_path):
            return writable_store(MyStore(resolve(...)))

Needs pytest (a test dependency, not one of the package's).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from ..core.files import FileSet
from ..core.histogram import Histogram
from ..core.keys import Layout
from ..errors import StatsFileError
from ..store import open_store
from ..store.base import StatsStore
from ..store.document import Part, build_document, dumps
from ..store.names import LATEST, version_name

__all__ = ["StoreTests", "stats_document"]

#: Four gray samples: 1, 2, 3, 4.
_COUNTS = np.zeros((1, 256), np.int64)
_COUNTS[0, 1:5] = 1


def stats_document(version: int, parent: int | None, marker: str = "") -> bytes:
    """A small valid stats file; ``marker`` tells writers' files apart (in ``source``)."""
    return dumps(
        build_document(
            version=version,
            parent=parent,
            created="2026-01-01T00:00:00+00:00",
            source=f"memory://source{marker}",
            mode="gray",
            layout=Layout("L", "uint8"),
            total=Part(Histogram(_COUNTS), 1, FileSet(1, 1, 0)),
            skipped=[],
            run={},
            provenance={},
            tool_version="test",
        )
    )


class StoreTests:
    """One conformance suite for every stats-store backend."""

    @pytest.fixture
    def store(self) -> StatsStore:
        raise NotImplementedError("give the suite a `store` fixture: a fresh writable store")

    def test_empty_store_has_no_versions(self, store: StatsStore) -> None:
        assert store.versions() == []
        with pytest.raises(StatsFileError, match="no stats versions"):
            store.load()

    def test_versions_are_numbered_from_one(self, store: StatsStore) -> None:
        assert [store.write(stats_document, parent=None) for _ in range(3)] == [1, 2, 3]
        assert store.versions() == [1, 2, 3]
        listed = store.fs.ls(store.location.path, detail=False)
        names = {path.rstrip("/").rsplit("/", 1)[-1] for path in listed}
        assert {"v000001.json", "v000002.json", "v000003.json", LATEST} <= names
        assert store.load().version == 3
        assert store.load(2).version == 2
        assert json.loads(store.read_bytes(LATEST)) == json.loads(store.read_bytes("v000003.json"))

    def test_create_never_overwrites(self, store: StatsStore) -> None:
        store.write(stats_document, parent=None)
        before = store.read_bytes(version_name(1))
        with pytest.raises(FileExistsError):
            store.create(version_name(1), stats_document(1, None, "-other"))
        assert store.read_bytes(version_name(1)) == before

    def test_a_taken_number_moves_the_writer_on(self, store: StatsStore) -> None:
        calls = []

        def build(version: int, parent: int | None) -> bytes:
            calls.append(version)
            if len(calls) == 1:  # a rival creates this number between our listing and create
                store.create(version_name(version), stats_document(version, None, "-rival"))
            return stats_document(version, parent)

        assert store.write(build, parent=None) == 2
        assert calls == [1, 2]
        assert store.load(1).source == "memory://source-rival"
        assert store.load(2).source == "memory://source"
        assert store.load().version == 2

    def test_latest_never_moves_back(self, store: StatsStore) -> None:
        store.publish_latest(5, stats_document(5, None))
        store.publish_latest(3, stats_document(3, None))
        assert store.load().version == 5
        assert store.latest_version() == 5

    def test_missing_version_is_a_clear_error(self, store: StatsStore) -> None:
        store.write(stats_document, parent=None)
        with pytest.raises(StatsFileError, match="no version 7"):
            store.load(7)

    def test_concurrent_writers_get_distinct_versions(self, store: StatsStore) -> None:
        if not store.supports_exclusive_create:
            pytest.skip(f"{type(store).__name__} declares it cannot create exclusively")
        written: list[int] = []
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for _ in range(3):
                    written.append(open_store(store.location).write(stats_document, parent=None))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert sorted(written) == list(range(1, 13))
        assert store.versions() == list(range(1, 13))
        for number in written:
            assert store.load(number).version == number
        assert store.load().version == 12
