"""The installed distribution adds one top-level package, `citesearch`, and nothing with a generic name."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_only_the_citesearch_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("citesearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"citesearch"}
    for sub in ("api", "index", "embeddings"):
        assert f"citesearch/{sub}/__init__.py" in names
    assert "citesearch/index/data/multilingual-e5-small.npz" in names
    for page_file in ("templates/search.html", "templates/article.html", "static/page.js", "static/page.css"):
        assert f"citesearch/api/{page_file}" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "citesearch = citesearch.api.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
