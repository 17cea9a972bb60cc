"""``--cluster``: the config that names a cluster, the sizing arithmetic, a cluster manager
started from a ``clusters:`` spec (a real ``distributed.LocalCluster``), ``--dry-run`` and the
errors that need no batch system. The runs on a real Slurm are in ``test_slurm.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.config import DEFAULT_JOBS, ClusterSpec, JobConfig, Scale
from pipeline.errors import UsageError
from pipeline.run.sizing import JobShape, planned_threads, size_for

from conftest import one_error_line
from reference import pil_pixels, reference_stats

SLURM_OPTIONS = {"cores": 2, "processes": 1, "memory": "1GB", "walltime": "00:20:00",
                 "queue": "gpu", "account": "vision",
                 "worker_extra_args": ["--lifetime", "55m", "--lifetime-stagger", "4m"]}


def config(**values) -> JobConfig:
    return JobConfig.from_mapping({"source": "images", "out": "stats", **values})


# --- the config ------------------------------------------------------------------------------


def test_a_jobqueue_kind_takes_cluster_options_as_its_arguments():
    spec = config(cluster="slurm", cluster_options=SLURM_OPTIONS, scale={"jobs": 3}).cluster_spec
    assert spec == ClusterSpec("slurm", "dask_jobqueue", "SLURMCluster", (), SLURM_OPTIONS,
                               Scale(3, "jobs"))
    assert spec.is_jobqueue
    assert config().cluster_spec is None  # local


def test_a_named_spec_with_its_own_size_and_top_level_sizing_winning():
    clusters = {"k8s": {"module": "dask_kubernetes.operator", "class": "KubeCluster",
                        "kwargs": {"name": "imgstats", "image": "ghcr.io/dask/dask:latest"},
                        "adapt": {"minimum": 0, "maximum": 20}}}
    spec = config(cluster="k8s", clusters=clusters).cluster_spec
    assert (spec.module, spec.cls, spec.adapt, spec.scale) == (
        "dask_kubernetes.operator", "KubeCluster", {"minimum": 0, "maximum": 20}, None)
    assert not spec.is_jobqueue
    spec = config(cluster="k8s", clusters=clusters, scale=8).cluster_spec
    assert (spec.scale, spec.adapt) == (Scale(8, "workers"), None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cluster": "slrum"}, "unknown cluster 'slrum' (did you mean 'slurm'?): one of local, "
                               "slurm, pbs, sge, lsf, htcondor, oar, moab"),
        ({"cluster": "slurm", "scale": 0}, "key 'scale' must be a positive integer, not 0"),
        ({"cluster": "slurm", "scale": {"nodes": 2}}, "key 'scale' must be a number of workers, "
                                                      "{workers: N} or {jobs: N}"),
        ({"cluster": "slurm", "adapt": {"maximum": -1}}, "adapt': maximum must be a whole number"),
        ({"cluster": "slurm", "scale": 2, "adapt": {"maximum": 2}},
         "give scale or adapt, not both"),
        ({"cluster": "slurm", "scheduler": "tcp://h:8786"}, "scheduler and cluster 'slurm' both "
                                                            "given"),
        ({"cluster": "x", "clusters": {"x": {"module": "m"}}}, "clusters.x needs module and class"),
        ({"cluster": "x", "clusters": {"x": {"module": "m", "class": "C", "kwarg": {}}}},
         "clusters.x: unknown key 'kwarg' (did you mean 'kwargs'?)"),
        ({"cluster_timeout": 0}, "cluster_timeout must be a positive number of seconds"),
    ],
)
def test_bad_cluster_configs_are_refused_naming_the_key(values, message):
    with pytest.raises(UsageError) as raised:
        config(**values)
    assert message in str(raised.value)


def test_dask_scheduler_address_is_ignored_when_a_cluster_is_started(monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://elsewhere:8786")
    assert config().scheduler_address == "tcp://elsewhere:8786"
    assert config(cluster="slurm").scheduler_address is None


# --- sizing ----------------------------------------------------------------------------------


def test_default_size_is_a_few_jobs_and_never_more_jobs_than_shards():
    shape = JobShape(processes=1, threads=4)
    assert planned_threads(None, None, shape) == DEFAULT_JOBS * 4
    assert size_for(None, None, shape, shards=100).workers == DEFAULT_JOBS
    assert size_for(None, None, shape, shards=5).jobs == 2  # 5 shards fill 2 jobs of 4 threads
    assert size_for(None, None, shape, shards=1).jobs == 1


def test_scale_in_jobs_or_workers_becomes_whole_jobs():
    shape = JobShape(processes=2, threads=2)  # a job: 2 workers of 2 threads
    assert size_for(Scale(3, "jobs"), None, shape, shards=100).workers == 6
    assert size_for(Scale(5, "workers"), None, shape, shards=100).workers == 6  # 3 whole jobs
    assert size_for(Scale(10, "jobs"), None, shape, shards=9).workers == 6  # 9 shards: 3 jobs
    assert planned_threads(Scale(3, "jobs"), None, shape) == 12


def test_adapt_bounds_in_workers_or_jobs_capped_by_shards():
    shape = JobShape(processes=2, threads=1)
    sizing = size_for(None, {"minimum": 0, "maximum": 8, "interval": "200ms"}, shape, shards=100)
    assert (sizing.jobs, sizing.adapt) == (4, {"minimum": 0, "maximum": 8, "interval": "200ms"})
    sizing = size_for(None, {"minimum_jobs": 1, "maximum_jobs": 10}, shape, shards=6)
    assert (sizing.jobs, sizing.adapt) == (3, {"minimum": 2, "maximum": 6})
    assert planned_threads(None, {"minimum": 0}, shape) == DEFAULT_JOBS * 2  # unbounded


# --- a cluster manager from a spec: a real LocalCluster --------------------------------------


def small_corpus(folder: Path, count: int = 24, seed: int = 3) -> list[Path]:
    """``count`` random PNGs and JPEGs of a few sizes."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        sub = folder / f"class{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (8 + i % 5, 12 + i % 7, 3), dtype=np.uint8)
        path = sub / f"{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def expected(paths: list[Path]) -> dict:
    """The independent reference (pure Python integers) over what Pillow decodes."""
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(pil_pixels(image.convert("RGB")))
    return reference_stats(images, 255).as_document()


def write_config(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_spec_cluster_is_started_sized_and_closed_and_the_run_is_exact(tmp_path, imgstats):
    paths = small_corpus(tmp_path / "images")
    spec = {"module": "distributed", "class": "LocalCluster",
            "kwargs": {"n_workers": 0, "threads_per_worker": 1, "dashboard_address": ":0"},
            "scale": 2}
    cfg = write_config(tmp_path / "c.yaml", {"cluster": "mine", "clusters": {"mine": spec}})
    report = tmp_path / "report.html"
    done = imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                    "--config", str(cfg), "--performance-report", str(report))
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "stats" / "v000001.json").read_text())
    assert {k: doc[k] for k in expected(paths)} == expected(paths)
    assert doc["run"]["worker_threads"] == 2
    html = report.read_text()
    assert "Dask Performance Report" in html and "imgstats-scan" in html


def test_a_spec_that_cannot_be_imported_fails_with_one_line(tmp_path, imgstats):
    """What a Kubernetes spec gives where dask-kubernetes is not installed (as here)."""
    small_corpus(tmp_path / "images", count=2)
    cfg = write_config(tmp_path / "c.yaml", {"cluster": "k8s", "clusters": {"k8s": {
        "module": "dask_kubernetes.operator", "class": "KubeCluster"}}})
    done = imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                    "--config", str(cfg))
    line = one_error_line(done, 2, empty_stdout=True)
    assert line.startswith("imgstats: error: cannot start cluster 'k8s': cannot import "
                           "dask_kubernetes.operator: No module named 'dask_kubernetes'"), line
    assert not (tmp_path / "stats").exists()


# --- dask-jobqueue without a batch system ----------------------------------------------------


def test_dry_run_prints_the_job_script_and_writes_nothing(tmp_path, imgstats):
    cfg = write_config(tmp_path / "c.yaml", {"cluster": "slurm", "cluster_options": {
        **SLURM_OPTIONS, "scheduler_options": {"dashboard_address": ":0"}}, "scale": {"jobs": 3}})
    done = imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                    "--config", str(cfg), "--dry-run", env={"PATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    script = done.stdout
    assert "# size: 3 jobs of 1 worker(s) x 2 thread(s) each" in script
    for directive in ("#SBATCH -p gpu", "#SBATCH -A vision", "#SBATCH -t 00:20:00",
                      "#SBATCH --cpus-per-task=2"):
        assert directive in script.splitlines(), script
    assert "--lifetime 55m --lifetime-stagger 4m" in script
    assert not (tmp_path / "stats").exists() and not (tmp_path / "images").exists()


def test_no_submit_command_on_path_fails_with_one_line(tmp_path, imgstats):
    small_corpus(tmp_path / "images", count=2)
    cfg = write_config(tmp_path / "c.yaml", {"cluster": "pbs", "cluster_options": {
        "cores": 1, "memory": "1GB"}})
    done = imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                    "--config", str(cfg), env={"PATH": str(tmp_path)})
    assert one_error_line(done, 2, empty_stdout=True) == (
        "imgstats: error: cannot start the pbs cluster: qsub is not on PATH (run imgstats where "
        "pbs jobs can be submitted)")
    assert not (tmp_path / "stats").exists()


def test_a_jobqueue_cluster_without_cores_and_memory_fails_with_one_line(tmp_path, imgstats):
    small_corpus(tmp_path / "images", count=2)
    done = imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                    "--cluster", "slurm", "--dry-run")
    line = one_error_line(done, 2, empty_stdout=True)
    assert line.startswith("imgstats: error: cannot start cluster 'slurm': You must specify how "
                           "much cores and memory per job"), line


def test_the_shipped_slurm_config_loads_and_its_job_script_is_what_it_says(tmp_path):
    from pipeline.config import load_config_file

    from conftest import ROOT

    path = ROOT / "configs" / "slurm.yaml"
    loaded = JobConfig.from_mapping(load_config_file(str(path)))
    spec = loaded.cluster_spec
    assert (spec.cls, spec.scale, loaded.cluster_timeout) == ("SLURMCluster", Scale(4, "jobs"),
                                                              1800.0)
    done = subprocess.run(  # in an empty folder, to see that the dry run leaves nothing there
        [sys.executable, "-m", "pipeline", "compute", "--config", str(path), "--dry-run"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PATH": "/nonexistent"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "# size: 4 jobs of 2 worker(s) x 4 thread(s) each at most (fewer for fewer shards)" \
        in lines
    for directive in ("#SBATCH -p cpu", "#SBATCH -A vision", "#SBATCH -t 01:00:00",
                      "#SBATCH --cpus-per-task=8", "#SBATCH --mem=15G", "#SBATCH --qos=normal"):
        assert directive in lines, done.stdout
    assert "--nthreads 4" in done.stdout and "--nworkers 2" in done.stdout
    assert "--lifetime 55m --lifetime-stagger 4m --interface ib0" in done.stdout
    assert list(tmp_path.iterdir()) == []  # not even the jobs' log folder
