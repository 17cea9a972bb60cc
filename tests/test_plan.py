"""The streaming plan, pure: the listing lined up against the previous record's segments
(``plan.align``) and the files to read cut into shards (``work.shards``), against
obviously-correct computations over the same lists."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.files import FileEntry, FileSet
from pipeline.run.plan import Changed, Fresh, Reused, align
from pipeline.store.segments import Segment

from planning import planned_shards


def entry(i: int, size: int = 10, token: str = "t") -> FileEntry:
    return FileEntry(f"f{i:05d}.png", size, token)


def segments_of(old: list[FileEntry], cuts: list[int]) -> list[tuple[Segment, list[FileEntry]]]:
    """``old`` cut into segments at the indices ``cuts``, each with the files it records."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(old)}), len(old)] if old else []
    result = []
    for start, end in itertools.pairwise(bounds):
        files = old[start:end]
        fileset = FileSet()
        for e in files:
            fileset = fileset.add(e)
        name = f"segments/{'0' * 32}/{uuid.uuid4().hex}.arrow"
        result.append((Segment(name, files[0].path, files[-1].path, fileset, 1), files))
    return result


# A previous listing, how it was cut into segments, and the listing now: files of the old one
# kept, dropped or changed (another token), and new ones anywhere.
histories = st.tuples(
    st.lists(st.sampled_from("kdc"), max_size=80),  # keep, drop, change each old file
    st.lists(st.integers(0, 80), max_size=12),  # segment cuts
    st.sets(st.integers(0, 200), max_size=40),  # new files, by number (odd: between old ones)
    st.integers(1, 7),  # Fresh batch size
)


def history(fates, cuts, added):
    old = [entry(2 * i) for i in range(len(fates))]
    now = {e.path: e for e, fate in zip(old, fates, strict=True) if fate == "k"}
    now |= {e.path: FileEntry(e.path, e.size, "new") for e, fate in zip(old, fates, strict=True)
            if fate == "c"}
    for n in added:
        now.setdefault(entry(n).path, entry(n, token="added"))
    return old, segments_of(old, cuts), sorted(now.values())


@settings(max_examples=300, deadline=None)
@given(histories)
def test_align_covers_the_listing_in_order_and_reuses_exactly_the_unchanged(case):
    fates, cuts, added, batch = case
    _, segments, listing = history(fates, cuts, added)
    units = list(align(listing, [s for s, _ in segments], batch=batch))

    covered: list[FileEntry] = []
    seen_segments = []
    recorded = {s.name: files for s, files in segments}
    for unit in units:
        if isinstance(unit, Reused):
            covered += recorded[unit.segment.name]  # unread: its files are the old ones
            seen_segments.append(unit.segment)
        elif isinstance(unit, Changed):
            covered += unit.listed
            seen_segments.append(unit.segment)
        else:
            assert isinstance(unit, Fresh)
            assert 0 < len(unit.listed) <= batch
            covered += unit.listed
    assert covered == listing  # every listed file once, in path order
    assert seen_segments == [s for s, _ in segments]  # every old segment once, in order

    for unit in units:
        if isinstance(unit, Reused | Changed):
            first, last = unit.segment.first, unit.segment.last
            in_range = [e for e in listing if first <= e.path <= last]
            unchanged = in_range == recorded[unit.segment.name]
            assert isinstance(unit, Reused) == unchanged
            if isinstance(unit, Changed):
                assert unit.listed == in_range
        else:
            for e in unit.listed:  # new files lie in no segment's range
                assert not any(s.first <= e.path <= s.last for s, _ in segments)


def test_align_examples():
    old = [entry(i) for i in range(6)]
    (a, _), (b, _) = segments_of(old, [3])
    assert list(align(old, [a, b])) == [Reused(a), Reused(b)]
    changed = [*old[:4], FileEntry(old[4].path, 11, "t"), old[5]]
    assert list(align(changed, [a, b])) == [Reused(a), Changed(b, changed[3:])]
    assert list(align(old[3:], [a, b])) == [Changed(a, []), Reused(b)]  # a's files are gone
    assert list(align(old, [])) == [Fresh(old)]  # a full run
    assert list(align([], [a])) == [Changed(a, [])]


# --- work.shards: a full run's shards (every file new) ------------------------------------------


def _entries(sizes) -> list[FileEntry]:
    return [FileEntry(f"f{i:05d}.png", size, f"t{i}") for i, size in enumerate(sizes)]


sizes_strategy = st.lists(st.integers(0, 5000), min_size=0, max_size=60)


@settings(max_examples=150, deadline=None)
@given(sizes_strategy, st.integers(1, 8000), st.integers(1, 20), st.integers(1, 16))
def test_shards_partition(sizes, max_bytes, max_files, min_shards):
    entries = _entries(sizes)
    cut = planned_shards(entries, max_bytes, max_files, min_shards)
    assert planned_shards(entries, max_bytes, max_files, min_shards) == cut  # deterministic
    assert [s.index for s in cut] == list(range(len(cut)))
    assert [e for s in cut for e in s.files] == entries  # contiguous, each file once, in order
    assert all(s.files for s in cut)
    for shard in cut:
        assert len(shard.files) <= max_files
        assert shard.nbytes <= max_bytes or len(shard.files) == 1
        assert shard.nbytes == sum(e.size for e in shard.files)


@settings(max_examples=150, deadline=None)
@given(sizes_strategy, st.integers(1, 8000), st.integers(1, 20))
def test_shards_greedy_without_min_shards(sizes, max_bytes, max_files):
    """A shard closes only when the next file would break a limit."""
    cut = planned_shards(_entries(sizes), max_bytes, max_files, min_shards=1)
    for shard, following in itertools.pairwise(cut):
        full = len(shard.files) == max_files
        assert full or shard.nbytes + following.files[0].size > max_bytes


@settings(max_examples=150, deadline=None)
@given(sizes_strategy, st.integers(1, 16))
def test_small_collections_make_at_least_min_shards(sizes, min_shards):
    """Small collections are cut into at least min_shards shards (or one file per shard)."""
    entries = _entries(sizes)
    assert len(planned_shards(entries, min_shards=min_shards)) >= min(min_shards, len(entries))


def test_shards_examples():
    assert planned_shards([]) == []
    entries = _entries([10, 10, 10, 100, 10, 10])
    cut = [[e.path for e in s.files] for s in planned_shards(entries, max_bytes=25, max_files=9)]
    assert cut == [
        ["f00000.png", "f00001.png"],
        ["f00002.png"],
        ["f00003.png"],  # larger than the limit: alone
        ["f00004.png", "f00005.png"],
    ]
    assert [len(s.files) for s in planned_shards(entries, max_bytes=10**6, max_files=4)] == [4, 2]
    assert len(planned_shards(_entries([1] * 10), min_shards=6)) >= 6
    # a large collection streams: the limits are not lowered by what is not seen yet
    many = _entries([1] * 5000)
    assert [len(s.files) for s in planned_shards(many, max_files=1000, min_shards=4)] == [1000] * 5
