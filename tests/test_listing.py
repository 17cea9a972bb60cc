"""The streaming listing: the same entries, in the same order, as walking everything and
sorting; S3 listed in parallel by prefix equals one sequential listing (moto server)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.files import FileEntry, is_image_path
from pipeline.fs.listing import _find_objects, iter_images
from pipeline.fs.location import resolve
from pipeline.fs.prefixes import list_by_prefix

#: Characters that sort just before and after "/" and ".", and beyond ASCII.
ALPHABET = "-./0_aZé~ "

names = st.text(ALPHABET.replace("/", ""), min_size=1, max_size=3).filter(
    lambda n: n not in (".", "..")
)
files = st.tuples(names, st.sampled_from(["", ".png", ".JPG", ".txt"])).map("".join).filter(
    lambda n: n not in (".", "..")
)
trees = st.recursive(
    st.dictionaries(files, st.none(), max_size=4),
    lambda inner: st.dictionaries(names, inner, max_size=4),
    max_leaves=30,
)


def _write(root: Path, tree: dict[str, object]) -> None:
    for name, sub in tree.items():
        if isinstance(sub, dict):
            (root / name).mkdir(exist_ok=True)
            _write(root / name, sub)
        elif not (root / name).exists():
            (root / name).write_bytes(b"x" * len(name))


def _tree(tmp: str, tree: dict[str, object]) -> Path:
    root = Path(tmp) / "data"
    root.mkdir()
    _write(root, {"z.png": None, **tree})
    return root


def _walked_and_sorted(root: str) -> list[FileEntry]:
    """The listing as it was made before it streamed: walk everything, then sort."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            path = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            if is_image_path(path):
                status = os.stat(os.path.join(folder, name))
                out.append(FileEntry(path, status.st_size, str(status.st_mtime)))
    return sorted(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
def test_streaming_local_listing_is_the_sorted_walk(tree):
    with tempfile.TemporaryDirectory() as tmp:
        root = _tree(tmp, tree)
        location = resolve(str(root))
        listed = list(iter_images(location.filesystem(), location.path))
        assert listed == _walked_and_sorted(str(root))


@settings(max_examples=40, deadline=None)
@given(tree=trees)
def test_streaming_folder_by_folder_listing_is_the_sorted_walk(tree):
    """A filesystem listed with ``ls`` (a local one, through fsspec's generic walk)."""
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    with tempfile.TemporaryDirectory() as tmp:
        root = _tree(tmp, tree)
        fs = DirFileSystem(str(root), LocalFileSystem())
        listed = [(e.path, e.size) for e in iter_images(fs, "")]
        assert listed == [(e.path, e.size) for e in _walked_and_sorted(str(root))]


def test_the_listing_streams(tmp_path):
    """The first entry comes before the walk has seen the rest of the tree."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(b"x")
    entries = iter_images(resolve(str(tmp_path)).filesystem(), str(tmp_path))
    assert next(entries).path == "a/x.png"
    (tmp_path / "b" / "y.png").write_bytes(b"y")  # b/ is not listed yet
    assert [e.path for e in entries] == ["b/x.png", "b/y.png"]


# --- S3, on a moto server ------------------------------------------------------------------------

KEYS = [
    "data/a.png",
    "data/a.png/inner.png",  # a key that is also a prefix
    "data/a.png0.png",
    "data/a-b/c.png",
    "data/a/b/c.png",
    "data/a/b/",  # folder markers
    "data/a/",
    "data/",
    "data/.hidden/x.png",
    "data/é/ü.png",
    "data/z.png",
    *(f"data/many/{i:03d}.png" for i in range(25)),
    *(f"data/deep/{i % 3}/{i % 2}/{i:02d}.jpg" for i in range(12)),
    "datab/outside.png",
]


@pytest.fixture(scope="module")
def s3_tree(s3_endpoint):
    """A bucket ``imgstats-listing`` holding :data:`KEYS`, for the module (only read)."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    if fs.exists("imgstats-listing"):
        fs.rm("imgstats-listing", recursive=True)
    fs.mkdir("imgstats-listing")
    fs.pipe({f"imgstats-listing/{key}": b"" if key.endswith("/") else b"x" * (i + 1)
             for i, key in enumerate(KEYS)})
    fs.invalidate_cache()
    yield fs
    fs.rm("imgstats-listing", recursive=True)


@pytest.mark.parametrize("parts, concurrency, page", [(1, 1, 1000), (2, 2, 3), (64, 16, 2),
                                                      (1000, 4, 5)])
def test_parallel_s3_listing_equals_one_sequential_listing(s3_tree, parts, concurrency, page):
    sequential = sorted(_find_objects(s3_tree, "imgstats-listing/data"))
    assert any(path == "a.png/inner.png" for path, _, _ in sequential)
    assert not any(path.endswith("/") or not path for path, _, _ in sequential)
    listed = list(list_by_prefix(s3_tree, "imgstats-listing/data", parts, concurrency, page))
    assert listed == sequential
    bucket = list(list_by_prefix(s3_tree, "imgstats-listing", parts, concurrency, page))
    assert bucket == sorted(_find_objects(s3_tree, "imgstats-listing"))


def test_s3_listing_through_iter_images(s3_tree):
    paths = [e.path for e in iter_images(s3_tree, "imgstats-listing/data")]
    assert paths == sorted(p for p, _, _ in _find_objects(s3_tree, "imgstats-listing/data")
                           if is_image_path(p))
    assert "a.png/inner.png" in paths and "é/ü.png" in paths


def test_a_reader_that_stops_early_stops_the_listing_threads(s3_tree):
    entries = list_by_prefix(s3_tree, "imgstats-listing/data", 64, 4, 1)
    assert next(entries)[0] == ".hidden/x.png"
    entries.close()  # the threads listing ahead give up; nothing hangs
