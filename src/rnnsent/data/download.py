"""Where the data comes from: an explicit path, ``$RNNSENT_DATA``, the cache, or a download of aclImdb."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from rnnsent.data.cache import default_cache_dir
from rnnsent.data.in_memory import in_memory_source, is_in_memory
from rnnsent.errors import DataError

IMDB_URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
IMDB_ARCHIVE_NAME = "aclImdb_v1.tar.gz"


def check_data_argument(data: object) -> None:
    """Raise :class:`DataError` unless ``data`` names a source: None, a path, or ``(texts, labels)``."""
    if data is not None and not is_in_memory(data) and not isinstance(data, (str, os.PathLike)):
        raise DataError(f"data is a {type(data).__name__}; give a path to a data source, or texts and labels "
                        "as data=(texts, labels)")


def resolve_source(path: str | os.PathLike | tuple | list | None = None, download: bool = True) -> Path:
    """Where the data comes from: ``path`` (or texts and labels given in memory as ``(texts,
    labels)``, see :mod:`rnnsent.data.in_memory`), else ``$RNNSENT_DATA``, else the cache, else a download."""
    if is_in_memory(path):
        return in_memory_source(path)
    check_data_argument(path)
    chosen = path or os.environ.get("RNNSENT_DATA")
    if chosen:
        resolved = Path(chosen).expanduser()
        if not resolved.exists():
            origin = "--data" if path else "RNNSENT_DATA"
            raise DataError(f"data source {resolved} (from {origin}) does not exist; check the path")
        return resolved
    cached = default_cache_dir() / IMDB_ARCHIVE_NAME
    if cached.exists():
        return cached
    if not download:
        raise DataError("no data source: pass --data PATH or set RNNSENT_DATA")
    return download_file(IMDB_URL, cached, IMDB_MD5)


def source_identity(source: Path) -> dict[str, int]:
    """What identifies a data source's content cheaply: its size and modification time (a
    folder's: of every file in it), for telling whether it changed."""
    if source.is_dir():
        files = [p for p in source.rglob("*") if p.is_file()]
        return {"size": sum(p.stat().st_size for p in files), "mtime_ns": max((p.stat().st_mtime_ns for p in files), default=0),
                "files": len(files)}
    status = source.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def download_file(url: str, destination: Path, md5: str | None, quiet: bool = False) -> Path:
    """Download ``url`` to ``destination`` atomically, checking its MD5 when given."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=destination.name, suffix=".tmp")
    digest = hashlib.md5()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            from tqdm import tqdm

            with tqdm(total=total or None, unit="B", unit_scale=True, desc=f"downloading {destination.name}",
                      disable=quiet or not sys.stderr.isatty()) as bar:
                received = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                    received += len(chunk)
            # A dropped connection can end the body early without an exception.
            if total and received != total:
                raise DataError(f"download of {url} was cut short ({received} of {total} bytes); try again")
            out.flush()
            os.fsync(out.fileno())
        if md5 and digest.hexdigest() != md5:
            raise DataError(f"download of {url} is corrupt (MD5 {digest.hexdigest()}, expected {md5}); try again")
        os.replace(temporary, destination)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise DataError(
            f"could not download {url} ({getattr(error, 'reason', error)}); "
            "without network access pass --data PATH to a local copy"
        ) from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return destination
