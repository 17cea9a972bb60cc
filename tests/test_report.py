"""``imgstats report``: one self-contained HTML file whose tables hold the stats file's numbers
and whose plots are real PNGs inside it; rendered for real in headless Chromium (slow)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import JobConfig, compute_stats, load_stats
from pipeline.store.document import QUANTILES

from conftest import ROOT, one_error_line

#: A skipped file whose name needs escaping in HTML.
ODD_NAME = 'a<b>&"c.png'
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """The parts of the page the tests read: images, table cells, links, scripts, text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.cells: list[str] = []
        self.tags: list[str] = []
        self.pre: list[str] = []
        self._in: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        self._in.append(tag)

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self._in and self._in[-1] in ("td", "th"):
            self.cells.append(data)
        if self._in and self._in[-1] == "pre":
            self.pre.append(data)


@pytest.fixture(scope="module")
def store(tmp_path_factory, cluster) -> Path:
    """Three versions with groups and a resize, a file that cannot be decoded."""
    root = tmp_path_factory.mktemp("report")
    images, out = root / "images", root / "st"
    rng = np.random.default_rng(3)
    for step in range(3):
        for i in range(4):
            pixels = rng.integers(0, 256, (20 + i, 30, 3)).astype(np.uint8) // (step + 1)
            path = images / f"class{i % 2}" / f"s{step}-{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
        (images / ODD_NAME).write_bytes(b"not an image")
        compute_stats(JobConfig(source=str(images), out=str(out), group_by="dir", resize=16,
                                scheduler=cluster.scheduler_address))
    return out


def report(store: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "report", str(store), "-o",
                           str(out), *args], capture_output=True, text=True, timeout=180,
                          cwd=ROOT)


def test_the_report_holds_the_numbers_and_its_plots(store, tmp_path):
    done = report(store, tmp_path / "report.html")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "report of version 3 written" in done.stderr
    html = (tmp_path / "report.html").read_text()
    page = Page()
    page.feed(html)
    stats = load_stats(str(store))
    # self-contained: no script, no stylesheet or image from elsewhere
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert "http://" not in html and "https://" not in html
    alts = [image["alt"] for image in page.images]
    assert alts == ["histogram per channel, linear scale", "histogram per channel, log scale",
                    "mean and std per group", "mean and std across versions"]
    for image in page.images:
        src = str(image["src"])
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as png:
            pixels = np.asarray(png.convert("RGB"))
        assert png.format == "PNG" and pixels.shape[1] == 900
        red = (pixels[:, :, 0] > 180) & (pixels[:, :, 1] < 80) & (pixels[:, :, 2] < 80)
        assert red.sum() > 50, image["alt"]  # channel R drawn in each plot
    cells = page.cells
    for i, channel in enumerate(stats.channels):  # the moments table, as the file holds them
        at = cells.index(channel, cells.index("max (raw)"))
        assert cells[at + 1 : at + 4] == [repr(stats.mean[i]), repr(stats.std[i]),
                                          repr(stats.variance[i])]
    for q in QUANTILES:  # the quantiles table
        at = cells.index(repr(q), cells.index("q"))
        assert cells[at + 1 : at + 4] == [str(v) for v in stats.quantile(q)]
    for name, group in stats.groups.items():  # the groups table
        at = cells.index(name)
        assert cells[at + 1] == str(group.image_count)
        assert cells[at + 2 : at + 8] == [f"{v:.6f}" for v in (*group.mean, *group.std)]
    for version in (1, 2, 3):  # the versions table
        old = load_stats(str(store), version=version)
        at = cells.index(str(version), cells.index("created (UTC)"))
        assert cells[at + 3] == " ".join(f"{m:.6f}" for m in old.mean)
    assert ODD_NAME in cells and "not an image Pillow can identify" in cells  # skipped
    assert 'a&lt;b&gt;&amp;&quot;c.png' in html and ODD_NAME not in html  # escaped
    assert json.loads("".join(page.pre)) == stats.document["provenance"]
    assert any("Resize(16, interpolation=bilinear)" in t for t in page.text)


def test_without_matplotlib_one_line_says_what_to_install(store, tmp_path):
    blocked = ("import sys; sys.modules['matplotlib'] = None\n"
               "from pipeline.cli import main\n"
               f"raise SystemExit(main(['report', {str(store)!r}, '-o', "
               f"{str(tmp_path / 'r.html')!r}]))")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    line = one_error_line(done, 2, empty_stdout=True)
    assert line == ("imgstats: error: imgstats report needs matplotlib: "
                    "pip install 'imgstats[report]'")
    assert not (tmp_path / "r.html").exists()


def test_a_report_of_one_version_and_of_a_missing_store(store, tmp_path, imgstats):
    done = report(store, tmp_path / "one.html", "--version", "1")
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "one.html").read_text()
    assert "version 1" in html and "One version so far" in html and html.count("<img") == 3
    missing = report(tmp_path / "nothing", tmp_path / "none.html")
    assert "no stats store" in one_error_line(missing, 2)
    assert not (tmp_path / "none.html").exists()


# --- a real browser ------------------------------------------------------------------------------

#: Appended to a copy of the page: how many images the browser decoded, in the DOM it dumps.
CHECKER = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-decoded", decoded + "/" + images.length);
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=120,
    )


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "net::ERR" in line]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                              "(.ci/run installs it with apt-get)")
def test_the_report_renders_in_headless_chromium(store, tmp_path):
    """The page loads in a real browser with every image decoded and no console error; the
    screenshot shows the plots. A copy with one image broken and a console error shows the
    checks can fail."""
    page = tmp_path / "report.html"
    assert report(store, page).returncode == 0
    html = page.read_text()
    shot = tmp_path / "report.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri(),
                    profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr
    assert console_errors(done.stderr) == []
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (2000, 1280, 3)
    colours = {"R": (214, 39, 40), "G": (44, 160, 44), "B": (31, 119, 180)}
    for name, rgb in colours.items():  # each channel's histogram line is on screen
        near = (np.abs(pixels.astype(int) - rgb).sum(axis=-1) < 40).sum()
        assert near > 200, (name, near)
    (tmp_path / "checked.html").write_text(html.replace("</body>", CHECKER + "</body>"))
    start = html.index("base64,") + len("base64,")
    broken = html[:start] + "AAAA" + html[start + 4 :]  # the first image's PNG signature
    broken = broken.replace("</body>", CHECKER + "<script>console.error('planted');</script>"
                            "</body>")
    (tmp_path / "broken.html").write_text(broken)
    for name, decoded, errors in (("checked", "4/4", 0), ("broken", "3/4", 1)):
        dumped = chromium("--dump-dom", "--virtual-time-budget=10000",
                          (tmp_path / f"{name}.html").as_uri(), profile=tmp_path / name)
        assert dumped.returncode == 0, dumped.stderr
        assert f'data-decoded="{decoded}"' in dumped.stdout, name
        assert len(console_errors(dumped.stderr)) == errors, dumped.stderr
