"""One conformance suite for every stats-store backend: local folder, memory://, S3 (moto)."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from pipeline.errors import StatsFileError
from pipeline.location import resolve
from pipeline.moments import Moments
from pipeline.stats import build_document, dumps
from pipeline.store import LATEST, StatsStore, open_store, version_name


def document(version: int, parent: int | None, marker: str = "") -> bytes:
    moments = Moments(4, (10,), (30,), (1,), (4,))
    return dumps(
        build_document(
            version=version,
            parent=parent,
            created="2026-01-01T00:00:00+00:00",
            source=f"memory://source{marker}",
            mode="gray",
            layout="L",
            dtype="uint8",
            moments=moments,
            image_count=1,
            skipped=[],
            files={"count": 1, "bytes": 1, "fingerprint": "0"},
            run={},
            provenance={},
            tool_version="test",
        )
    )


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path) -> StatsStore:
    if request.param == "local":
        location = resolve(str(tmp_path / "stats"))
    elif request.param == "memory":
        request.getfixturevalue("memfs")
        location = resolve(f"memory://stats-{uuid.uuid4().hex}")
    else:
        _, options = request.getfixturevalue("s3")
        location = resolve("s3://imgstats-test/stats", options)
    store = open_store(location)
    store.check_writable()
    return store


class TestStoreConformance:
    def test_empty_store_has_no_versions(self, store):
        assert store.versions() == []
        with pytest.raises(StatsFileError, match="no stats versions"):
            store.load()

    def test_versions_are_numbered_from_one(self, store):
        assert [store.write(document, parent=None) for _ in range(3)] == [1, 2, 3]
        assert store.versions() == [1, 2, 3]
        listed = store.fs.ls(store.location.path, detail=False)
        names = {path.rstrip("/").rsplit("/", 1)[-1] for path in listed}
        assert {"v000001.json", "v000002.json", "v000003.json", LATEST} <= names
        assert store.load().version == 3
        assert store.load(2).version == 2
        assert json.loads(store.read_bytes(LATEST)) == json.loads(store.read_bytes("v000003.json"))

    def test_create_never_overwrites(self, store):
        store.write(document, parent=None)
        before = store.read_bytes(version_name(1))
        with pytest.raises(FileExistsError):
            store._create(version_name(1), document(1, None, "-other"))
        assert store.read_bytes(version_name(1)) == before

    def test_a_taken_number_moves_the_writer_on(self, store):
        calls = []

        def build(version, parent):
            calls.append(version)
            if len(calls) == 1:  # a rival creates this number between our listing and create
                store._create(version_name(version), document(version, None, "-rival"))
            return document(version, parent)

        assert store.write(build, parent=None) == 2
        assert calls == [1, 2]
        assert store.load(1).source == "memory://source-rival"
        assert store.load(2).source == "memory://source"
        assert store.load().version == 2

    def test_latest_never_moves_back(self, store):
        store._publish_latest(5, document(5, None))
        store._publish_latest(3, document(3, None))
        assert store.load().version == 5

    def test_missing_version_is_a_clear_error(self, store):
        store.write(document, parent=None)
        with pytest.raises(StatsFileError, match="no version 7"):
            store.load(7)

    def test_concurrent_writers_get_distinct_versions(self, store):
        written: list[int] = []
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for _ in range(3):
                    written.append(open_store(store.location).write(document, parent=None))
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
