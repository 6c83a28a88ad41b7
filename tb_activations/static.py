"""The panel's files, as the plugin's static route serves them.

Every file of `frontend/` is served under its own name. The stylesheet is
one more name, `style.css`: its parts (one file per part of the panel, for
reading) concatenated in cascade order, so that the first open asks for one
stylesheet rather than one per part; each request is a round trip through
TensorBoard's server while it also answers the first data requests.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import logging
import zlib
from pathlib import Path

from tensorboard import errors

from tb_activations import params

logger = logging.getLogger("tb_activations")

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

STYLESHEET = "style.css"
"""The name the panel loads its whole stylesheet by."""

STYLESHEET_PARTS = (
    "style-base.css",
    "style-layer.css",
    "style-timeline.css",
    "style-map.css",
    "style-compare.css",
    "style-tokens.css",
)
"""The files `style.css` is made of, in this order (later rules win ties)."""


@functools.cache
def frontend_dir():
    """The directory of the panel's files (a `Traversable`).

    An installed wheel has it as the package `tb_activations.frontend`; a
    source checkout or an editable install has the top-level `frontend/`.
    """
    try:
        d = importlib.resources.files("tb_activations.frontend")
        if d.is_dir():
            return d
    except (ImportError, TypeError, ValueError, AttributeError, OSError):
        pass
    import tb_activations

    return Path(tb_activations.__file__).resolve().parent.parent / "frontend"


def static_impl(name: str) -> tuple[bytes, str]:
    """The body and content type of the panel's file `name`.

    Raises `NotFoundError` for anything but the plain name of a served
    file, so neither "..", nor a decoded "%2F", nor an absolute path can
    leave the directory.
    """
    suffix = Path(name).suffix if name and "/" not in name and "\\" not in name else ""
    content_type = CONTENT_TYPES.get(suffix)
    files = {}
    if content_type:
        try:
            files = {f.name: f for f in frontend_dir().iterdir()}
        except OSError:
            logger.warning("tb_activations: the panel's files are missing: %s", frontend_dir())
    if name == STYLESHEET and STYLESHEET not in files:
        parts = [files.get(p) for p in STYLESHEET_PARTS]
        if all(f is not None and f.is_file() for f in parts):
            return b"".join(_part(f.name, f.read_bytes()) for f in parts), content_type
    f = files.get(name)
    if f is None or not f.is_file():
        raise errors.NotFoundError(f"No static file {params.show(name)} in the panel.")
    return f.read_bytes(), content_type


def _part(name: str, body: bytes) -> bytes:
    """One part of the stylesheet, headed by its file's name for whoever reads it."""
    end = b"" if body.endswith(b"\n") else b"\n"
    return b"/* " + name.encode() + b" */\n" + body + end


@functools.lru_cache(maxsize=256)
def static_body(body: bytes) -> tuple[bytes, str]:
    """A file gzipped once, and its tag: no max-age (no version in its URL), but a 304."""
    return gzip.compress(body, mtime=0), f'"{zlib.crc32(body):08x}-{len(body):x}"'
