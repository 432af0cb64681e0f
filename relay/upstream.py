"""Where a session connects upstream, and with which credentials.

One `Upstream` per configured model is shared by every session of that model, so the OAuth access token
is fetched once and reused until it is close to expiry.  Gemini Live checks credentials only during the
WebSocket handshake, so a token merely has to be valid at connect (and reconnect) time.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Literal

import attrs
import trio

from relay.config import ModelEntry

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# Refresh this long before expiry so a token never dies between `target()` and the handshake.
REFRESH_MARGIN = 300.0
# A token fetched by another task while we queued is good enough if it outlives the handshake.
SHARED_TOKEN_MIN = 30.0
# requests' default for google-auth is 120 s; a session should not hang that long on a token.
TOKEN_TIMEOUT = 30.0
GEMINI_HOST = "generativelanguage.googleapis.com"
EMULATOR_PROJECT = "relay-emulator"


class UpstreamAuthError(Exception):
    """Credentials could not be loaded or refreshed; the message says why and holds no secrets.  `unreachable`:
    the token endpoint could not be reached (the network, not the credentials, may be at fault)."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@attrs.frozen
class UpstreamTarget:
    url: str
    headers: tuple[tuple[str, str], ...] = attrs.field(repr=False)
    model_path: str
    backend: Literal["vertex", "gemini"]


def vertex_host(location: str) -> str:
    if location == "global":
        return "aiplatform.googleapis.com"
    if location in ("us", "eu"):
        return f"aiplatform.{location}.rep.googleapis.com"
    return f"{location}-aiplatform.googleapis.com"


_SECRET_PATTERNS = (
    re.compile(r"-----BEGIN[^-]*-----.*?(?:-----END[^-]*-----|$)", re.S),
    re.compile(r"\bya29\.[\w.~+/=-]+"),
    re.compile(r"\bAIza[\w-]+"),
    re.compile(r"\beyJ[\w-]*\.[\w.-]*"),
    re.compile(r"(?i)\bbearer\s+[\w.~+/=-]+"),
    re.compile(r"\b[0-9a-f]{32,}\b"),
    # Base64-ish runs mixing cases and digits: tokens, keys, signatures; paths and words rarely look so.
    re.compile(r"(?=[\w+/=-]*[A-Z])(?=[\w+/=-]*[a-z])(?=[\w+/=-]*[0-9])[\w+/=-]{32,}"),
)


def scrub(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """Remove anything that looks like a credential from an error message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text if len(text) <= 500 else text[:500] + "..."


def _load_credentials(source: str | None) -> tuple[Any, str | None]:
    """Blocking: credentials and the project they name (runs in a worker thread)."""
    import google.auth

    if source is None:
        return google.auth.default(scopes=SCOPES)
    if source.lstrip().startswith("{"):
        info = json.loads(source)
    else:
        with open(source, encoding="utf-8") as f:
            info = json.load(f)
    if not isinstance(info, dict):
        raise ValueError("credentials JSON is not an object")
    kind = info.get("type")
    if kind == "service_account":
        from google.oauth2 import service_account

        creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        # from_service_account_info ignores this key, while gcloud-written files carry it.
        if info.get("quota_project_id"):
            creds = creds.with_quota_project(info["quota_project_id"])
        return creds, info.get("project_id")
    if kind == "authorized_user":
        from google.oauth2 import credentials as user_credentials

        return user_credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES), None
    # Other types (external_account, ...) can run commands or fetch URLs named in the file; use ADC for them.
    raise ValueError(f"unsupported credentials type {kind!r}; expected service_account or authorized_user")


def _make_request() -> Any:
    from google.auth.transport.requests import Request

    class _TimedRequest(Request):
        def __call__(self, *args: Any, timeout: float = TOKEN_TIMEOUT, **kwargs: Any) -> Any:
            return super().__call__(*args, timeout=timeout, **kwargs)

    return _TimedRequest()


def _seconds_left(creds: Any) -> float:
    from google.auth import _helpers

    if creds.expiry is None:
        return float("inf")
    return (creds.expiry - _helpers.utcnow()).total_seconds()


class Upstream:
    """One per ModelEntry, shared by all sessions of that model; caches the access token."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.backend: Literal["vertex", "gemini"] = entry.backend
        if self.backend == "vertex":
            version = entry.api_version or "v1beta1"
            base = entry.api_base or f"wss://{vertex_host(entry.vertex_location)}"
            path = f"/ws/google.cloud.aiplatform.{version}.LlmBidiService/BidiGenerateContent"
        else:
            version = entry.api_version or "v1beta"
            base = entry.api_base or f"wss://{GEMINI_HOST}"
            path = f"/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
        self._base = base
        self.url = base + path
        self._lock = trio.Lock()
        self._creds: Any = None
        self._creds_project: str | None = None
        self._request: Any = None
        self._quota: str | None = None  # the quota project of the credentials that made the current token
        self._token: str | None = None
        self._deadline = 0.0  # time.monotonic() at which self._token expires
        self._completed = 0  # refreshes finished (or failed) so far; cancelled ones don't count
        self._error: str | None = None

    def describe(self) -> str:
        e = self.entry
        if self.backend == "vertex":
            fallback = "from credentials" if e.upstream_auth == "google" else EMULATOR_PROJECT
            project = e.vertex_project or self._creds_project or fallback
            source = "vertex_credentials" if e.vertex_credentials else "application default credentials"
            auth = "none" if e.upstream_auth == "none" else source
            return (
                f"{e.model_name}: vertex {e.model} at {self._base} "
                f"(project {project}, location {e.vertex_location}, auth {auth})"
            )
        auth = "api key" if e.upstream_auth == "google" else "none"
        return f"{e.model_name}: gemini {e.model} at {self._base} (auth {auth})"

    async def check(self) -> str | None:
        """The start-up check: for Vertex with Google credentials, mint an access token (kept for the first
        sessions).  What was checked, None when there is nothing to check; UpstreamAuthError when it fails."""
        e = self.entry
        if self.backend == "gemini" or e.upstream_auth == "none":
            await self.target()  # an AI Studio key is only known to be good when Gemini takes it
            return None
        await self.target()
        who = getattr(self._creds, "service_account_email", None)
        return f"{e.model_name} ({who})" if who else e.model_name

    async def target(self) -> UpstreamTarget:
        e = self.entry
        if self.backend == "gemini":
            headers: tuple[tuple[str, str], ...] = ()
            if e.upstream_auth == "google":
                if not e.api_key:
                    raise UpstreamAuthError(f"no API key for gemini model {e.model_name}")
                # A header, never ?key=: URLs end up in logs.
                headers = (("x-goog-api-key", e.api_key),)
            model_path = e.model if e.model.startswith(("models/", "tunedModels/")) else f"models/{e.model}"
            return UpstreamTarget(url=self.url, headers=headers, model_path=model_path, backend="gemini")

        if e.upstream_auth == "none":
            project = e.vertex_project or EMULATOR_PROJECT
            return UpstreamTarget(self.url, (), self._vertex_model_path(project), "vertex")
        token, quota_project = await self._access_token()
        project = e.vertex_project or self._creds_project
        if not project:
            raise UpstreamAuthError(
                f"no Google Cloud project for model {e.model_name}: set litellm_params.vertex_project "
                "or VERTEXAI_PROJECT / GOOGLE_CLOUD_PROJECT (the credentials name none)"
            )
        headers = (("Authorization", f"Bearer {token}"),)
        if quota_project:
            headers += (("x-goog-user-project", quota_project),)
        return UpstreamTarget(self.url, headers, self._vertex_model_path(project), "vertex")

    def _vertex_model_path(self, project: str) -> str:
        m, loc = self.entry.model, self.entry.vertex_location
        if m.startswith("projects/"):
            return m
        if m.startswith("publishers/"):
            return f"projects/{project}/locations/{loc}/{m}"
        return f"projects/{project}/locations/{loc}/publishers/google/models/{m}"

    def _current(self, min_left: float) -> tuple[str, str | None] | None:
        if self._token is not None and self._deadline - time.monotonic() > min_left:
            return self._token, self._quota
        return None

    async def _access_token(self) -> tuple[str, str | None]:
        cached = self._current(REFRESH_MARGIN)
        if cached:
            return cached
        seen = self._completed
        async with self._lock:
            if self._completed != seen:
                # A refresh finished while we queued: share its outcome instead of asking again,
                # so a burst of sessions costs one token request (or one failure).
                if self._error is not None:
                    raise UpstreamAuthError(self._error)
                shared = self._current(SHARED_TOKEN_MIN)
                if shared:
                    return shared
            try:
                token = await self._refresh()
            except UpstreamAuthError as exc:
                self._error = str(exc)
                self._completed += 1
                raise
            self._error = None
            self._completed += 1
            # Even a token with under REFRESH_MARGIN left is the best there is right now.
            return token, self._quota

    async def _refresh(self) -> str:
        e = self.entry
        secrets = (e.api_key, self._token)
        if self._creds is None:
            if e.vertex_credentials is None:
                origin = "application default credentials"
            elif e.vertex_credentials.lstrip().startswith("{"):
                origin = "the inline vertex_credentials JSON"
            else:
                origin = f"vertex_credentials file {e.vertex_credentials}"
            try:
                creds, project = await trio.to_thread.run_sync(_load_credentials, e.vertex_credentials)
                request = await trio.to_thread.run_sync(_make_request)
            except Exception as exc:
                raise UpstreamAuthError(
                    f"could not load Google credentials for model {e.model_name} from {origin}: "
                    f"{type(exc).__name__}: {scrub(str(exc), secrets)}"
                ) from None
            # Both at once: a session cancelled between the two would leave credentials without their transport
            # (every later refresh then failed with "'NoneType' object is not callable").
            self._creds, self._creds_project, self._request = creds, project, request
        creds = self._creds
        try:
            # Abandoned if cancelled (a session that ends, the start-up check's deadline): a stuck token request
            # must not hold up the cancellation for the HTTP timeout.
            await trio.to_thread.run_sync(creds.refresh, self._request, abandon_on_cancel=True)
        except trio.Cancelled:
            # The abandoned thread goes on refreshing these credentials; the next refresh must not share the object
            # (or its HTTP session) with it, so it loads its own.
            self._creds = self._request = None
            raise
        except Exception as exc:
            from google.auth.exceptions import TransportError

            raise UpstreamAuthError(
                f"could not get a Google access token for model {e.model_name}: "
                f"{type(exc).__name__}: {scrub(str(exc), secrets)}", unreachable=isinstance(exc, TransportError)
            ) from None
        token = creds.token
        if not token:
            raise UpstreamAuthError(f"could not get a Google access token for model {e.model_name}: none returned")
        self._token = token
        self._deadline = time.monotonic() + _seconds_left(creds)
        self._quota = getattr(creds, "quota_project_id", None)
        return token
