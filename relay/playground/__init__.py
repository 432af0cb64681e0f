"""The browser playground: static HTML, CSS and JavaScript served at `/` on the relay's own port (relay.http).

No build step and nothing fetched from elsewhere: the files in this directory are the page, shipped as package data.
Only the paths in `FILES` are served (no directory lookups, so no traversal); each is read once and kept, with an
ETag so a browser revalidates cheaply (`cache-control: no-cache`: a new relay version is picked up at once).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

import attrs

HTML = "text/html; charset=utf-8"
CSS = "text/css; charset=utf-8"
JS = "text/javascript; charset=utf-8"  # AudioWorklet modules must come with a JavaScript MIME type
SVG = "image/svg+xml"

# request path → (file in this package, content type)
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", HTML),
    "/playground/style.css": ("style.css", CSS),
    "/playground/app.js": ("app.js", JS),
    "/playground/audio-worklet.js": ("audio-worklet.js", JS),
    "/playground/icon.svg": ("icon.svg", SVG),
}

# The page loads only its own files and talks only to its own relay (fetch /v1/models, WebSocket /v1/realtime).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
       "media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@attrs.frozen
class Asset:
    body: bytes
    content_type: str
    etag: str

    def headers(self) -> tuple[tuple[str, str], ...]:
        extra = (("content-security-policy", CSP), ("referrer-policy", "no-referrer")) \
            if self.content_type == HTML else ()
        return (("cache-control", "no-cache"), ("etag", self.etag), ("x-content-type-options", "nosniff"), *extra)


def asset(path: str, auth_required: bool = False) -> Asset | None:
    """The file served at `path`, or None.  The page says whether the relay needs a client key
    (`<html data-auth="required">`), so it asks for one before listing models instead of drawing a 401."""
    return _asset(path, auth_required) if path in FILES else None


@cache
def _asset(path: str, auth_required: bool) -> Asset:
    name, content_type = FILES[path]
    body = resources.files(__name__).joinpath(name).read_bytes()
    if name == "index.html" and auth_required:
        body = body.replace(b'data-auth="none"', b'data-auth="required"', 1)
    return Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
