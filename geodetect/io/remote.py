"""Scenes over HTTP(S): Cloud-Optimised GeoTIFFs read with GDAL's range requests (``/vsicurl/``).

GDAL reads only the bytes a window needs (the header, then the tiles it
covers). Before GDAL opens a URL, :func:`check_url` asks the server for the
first bytes with a ``Range`` header, so that the usual failures become one
line a user can act on: not found (404 and other HTTP errors), a server that
ignores ``Range`` (GDAL would then fetch the whole file for each read), a
connection refused or timing out.
"""

from __future__ import annotations

import os
import re

from geodetect.errors import RasterReadError

__all__ = ["is_remote", "to_url", "gdal_path", "check_url", "read_url", "GDAL_HTTP_OPTIONS"]

#: GDAL settings for reading COGs over HTTP: no directory listing on open (one request fewer per file),
#: merged consecutive range requests, a bounded number of retries
GDAL_HTTP_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MAX_RETRY": "2",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_TIMEOUT": "60",
    "CPL_VSIL_CURL_CHUNK_SIZE": "65536",
}

_URL = re.compile(r"^https?://", re.I)


def is_remote(path) -> bool:
    """True for ``http(s)://`` URLs and ``/vsicurl/`` paths."""
    p = os.fspath(path) if isinstance(path, os.PathLike) else path
    return isinstance(p, str) and (bool(_URL.match(p)) or p.startswith("/vsicurl/"))


def to_url(path: str) -> str:
    """The plain URL of an ``http(s)://`` or ``/vsicurl/`` path."""
    return path[len("/vsicurl/"):] if path.startswith("/vsicurl/") else path


def gdal_path(path: str) -> str:
    """The path GDAL opens: ``/vsicurl/URL`` for a URL, the path itself otherwise."""
    return "/vsicurl/" + path if _URL.match(path) else path


def _fail(url: str, why: str, what: str = "") -> RasterReadError:
    return RasterReadError(f"{url}: {why}{'; ' + what if what else ''}")


def _request(url: str, headers: dict, timeout: float):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "geodetect", **headers})
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) only, checked by the callers
    except urllib.error.HTTPError as exc:
        hint = {404: "not found on the server; check the URL", 403: "access denied by the server; check the URL and "
                "your credentials", 401: "the server wants credentials"}.get(exc.code, "the server refused the request")
        raise _fail(url, f"HTTP {exc.code} {exc.reason}", hint) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            raise _fail(url, "connection refused", "is the server running and the port right?") from None
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise _fail(url, f"no answer within {timeout:g} s", "is the host reachable?") from None
        raise _fail(url, f"cannot connect ({reason})", "check the host name and your network") from None
    except (TimeoutError, OSError) as exc:
        raise _fail(url, f"cannot read ({type(exc).__name__}: {exc})", "check the host and your network") from None


def check_url(path: str, *, timeout: float = 20.0) -> None:
    """Refuse, with one line that says what to do, a URL GDAL could not read window by window.

    Asks for the first 16 bytes with ``Range: bytes=0-15``: the answer must be ``206 Partial
    Content`` (a server answering 200 with the whole file does not support range requests).
    """
    url = to_url(os.fspath(path))
    if not _URL.match(url):
        return
    with _request(url, {"Range": "bytes=0-15"}, timeout) as resp:
        status = getattr(resp, "status", 200)
        if status != 206:
            raise _fail(url, f"the server ignores HTTP range requests (it answered {status} with the whole file to "
                             "'Range: bytes=0-15')",
                        "geodetect reads COGs window by window: serve the file from a server with range support "
                        "(nginx, Apache, S3, ...) or download it and pass the local path")


def read_url(url: str, *, timeout: float = 30.0) -> bytes:
    """The whole body of a small document (a STAC item) at ``url``, with the same one-line errors."""
    with _request(url, {}, timeout) as resp:
        return resp.read()
