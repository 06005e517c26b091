"""Fetch a weights file (local path or URL) and verify its SHA-256 before anything loads it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class WeightsError(RuntimeError):
    pass


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("MARQUEE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "marquee"
    )
    return Path(base) / "weights"


def is_url(ref: str) -> bool:
    return urllib.parse.urlparse(ref).scheme in ("http", "https", "file", "ftp")


def check_sha256_arg(expected: str) -> str:
    if not isinstance(expected, str) or not _HEX64.match(expected):
        raise WeightsError(f"--weights-sha256 must be 64 hexadecimal characters, got {expected!r}")
    return expected.lower()


def resolve_weights(ref: str, expected_sha256: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return a local path to a verified copy of the weights at ``ref`` (path or URL).

    Refuses (WeightsError) when the file's SHA-256 differs from ``expected_sha256``.
    URLs are downloaded once into the cache dir (verified before being moved into place).
    """
    expected = check_sha256_arg(expected_sha256)
    if not is_url(ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        _verify(path, expected, str(path))
        return path

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = os.path.basename(urllib.parse.urlparse(ref).path) or "weights"
    cached = cache / f"{expected[:16]}-{name}"
    if cached.is_file():
        if sha256_file(cached) == expected:
            return cached
        cached.unlink()  # corrupt or stale cache entry: fetch again
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=cache)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(ref, timeout=60) as resp:
                    shutil.copyfileobj(resp, out, 1 << 20)
            except OSError as e:  # URLError is an OSError
                raise WeightsError(f"could not download weights from {ref}: {e}") from e
        _verify(Path(tmp), expected, ref)
        os.replace(tmp, cached)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return cached


def _verify(path: Path, expected: str, label: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"SHA-256 mismatch for weights {label}: expected {expected}, got {actual}; refusing to load them"
        )
