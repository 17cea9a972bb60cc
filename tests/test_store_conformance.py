"""The shipped conformance suite (:mod:`pipeline.testing`) run against every stats-store
backend: local folder, memory://, S3 (a moto server), and the unsafe check-then-write one."""

from __future__ import annotations

import uuid

import pytest

from pipeline.fs.location import resolve
from pipeline.store import StatsStore, UnsafeStore, open_store, writable_store
from pipeline.testing import StoreTests


@pytest.fixture(params=["local", "memory", "s3", "unsafe"])
def any_store(request, tmp_path) -> StatsStore:
    if request.param == "local":
        return writable_store(open_store(resolve(str(tmp_path / "stats"))))
    if request.param == "s3":
        _, options = request.getfixturevalue("s3")
        return writable_store(open_store(resolve("s3://imgstats-test/stats", options)))
    request.getfixturevalue("memfs")
    location = resolve(f"memory://stats-{uuid.uuid4().hex}")
    if request.param == "unsafe":
        return writable_store(UnsafeStore(location), allow_unsafe=True)
    return writable_store(open_store(location))


class TestStoreConformance(StoreTests):
    @pytest.fixture
    def store(self, any_store: StatsStore) -> StatsStore:
        return any_store


def test_the_unsafe_store_says_what_it_cannot_do(memfs):
    store = UnsafeStore(resolve("memory://unsafe"))
    assert store.supports_exclusive_create is False
    with pytest.raises(Exception, match="cannot create files exclusively"):
        writable_store(store)
