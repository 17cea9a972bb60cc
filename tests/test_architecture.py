"""The package's layers, read from the code (an ``ast`` walk): each module imports only from
layers below its own (or from its own sub-package), third-party libraries stay in the layer
that owns them, and the bottom of the house imports nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import import_graph  # the one reader of the package's imports

#: Bottom first. A module may import any module of a lower layer, and modules of its own
#: sub-package; ``testing`` stands beside ``cli``, above ``store``; ``export`` and ``report``
#: (they read stats files) beside ``run``.
LAYERS = [
    ("pipeline._version", "pipeline.errors"),
    ("pipeline.core",),
    ("pipeline.config",),
    ("pipeline.fs",),
    ("pipeline.decode",),
    ("pipeline.store",),
    ("pipeline.api",),
    ("pipeline.run", "pipeline.export", "pipeline.report"),
    ("pipeline.cli", "pipeline.testing"),
    ("pipeline", "pipeline.__main__"),  # the lazy public surface, the ``python -m`` entry
]

#: Third-party packages and the sub-packages allowed to import them.
OWNERS = {
    "dask": ("pipeline.run",),
    "distributed": ("pipeline.run",),
    "dask_jobqueue": ("pipeline.run",),
    "bokeh": ("pipeline.run",),
    "fsspec": ("pipeline.fs", "pipeline.testing.synthetic"),
    "s3fs": ("pipeline.fs",),
    "PIL": ("pipeline.decode", "pipeline.testing.synthetic"),
    "simplejpeg": ("pipeline.decode",),
    "imagecodecs": ("pipeline.decode",),
    "numba": ("pipeline.core.kernels", "pipeline.core.compiled"),
    "pyarrow": ("pipeline.store.record", "pipeline.store.segments"),
    "yaml": ("pipeline.config",),
    "tqdm": ("pipeline.cli",),
    "pytest": ("pipeline.testing",),
    "matplotlib": ("pipeline.report.plots",),
}


MODULES = import_graph.modules()


def imports(path: Path) -> list[tuple[str, int]]:
    return import_graph.imports(path, MODULES)


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the layer entry it belongs to): the longest matching entry."""
    best = max(
        ((i, entry) for i, entries in enumerate(LAYERS) for entry in entries
         if module == entry or module.startswith(entry + ".")),
        key=lambda found: len(found[1]),
    )
    return best


def test_every_module_has_a_layer():
    for module in MODULES:
        assert layer_of(module), module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    here, own = layer_of(module)
    for target, line in imports(MODULES[module]):
        if not target.startswith("pipeline"):
            continue
        there, theirs = layer_of(target)
        where = f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}"
        assert there < here or (there == here and theirs == own), where


@pytest.mark.parametrize("module", sorted(MODULES))
def test_libraries_stay_in_their_layer(module):
    for target, line in imports(MODULES[module]):
        top = target.split(".")[0]
        if top in OWNERS:
            where = f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}"
            assert any(module == o or module.startswith(o + ".") for o in OWNERS[top]), where


def loaded_by(statement: str) -> dict[str, list[str]]:
    """What ``statement`` loads in a fresh interpreter: heavy libraries and pipeline modules."""
    script = (
        f"import json, sys\n{statement}\n"
        "heavy = ['numpy', 'PIL', 'pyarrow', 'fsspec', 'dask', 'distributed', 'numba',\n"
        "         'yaml']\n"
        "ours = sorted(m for m in sys.modules if m.startswith('pipeline'))\n"
        "print(json.dumps({'heavy': [m for m in heavy if m in sys.modules], 'pipeline': ours}))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=True)
    return json.loads(done.stdout)


def test_the_config_imports_nothing_heavy():
    loaded = loaded_by("import pipeline.config")
    assert loaded["heavy"] == []
    assert loaded["pipeline"] == ["pipeline", "pipeline._version", "pipeline.config",
                                  "pipeline.core", "pipeline.core.groups", "pipeline.core.keys",
                                  "pipeline.core.transform", "pipeline.errors"]


def test_reading_stats_loads_no_dask_no_decoders():
    loaded = loaded_by("from pipeline import load_stats")
    assert not {"dask", "distributed", "PIL", "pyarrow", "numba"} & set(loaded["heavy"])
    assert not [m for m in loaded["pipeline"] if m.startswith(("pipeline.run", "pipeline.decode"))]


def test_the_default_pixel_limit_is_pillows():
    from PIL import Image

    from pipeline.config import DEFAULT_MAX_IMAGE_PIXELS

    assert DEFAULT_MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS


def test_the_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    import pipeline

    assert pipeline.__version__ == version("imgstats")
