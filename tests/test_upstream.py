from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio

from relay.config import ModelEntry
from relay.upstream import Upstream, UpstreamAuthError, UpstreamTarget, scrub
from tests.tokenserver import TokenServer, write_service_account

MODEL = "gemini-2.0-flash-live-preview-04-09"
VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


@pytest.fixture
def ts() -> Iterator[TokenServer]:
    with TokenServer() as server:
        yield server


@pytest.fixture
def sa(tmp_path: Path, ts: TokenServer) -> str:
    return write_service_account(tmp_path / "sa.json", ts.url)


def vertex(credentials: str | None, **kw: object) -> ModelEntry:
    fields: dict[str, object] = {
        "model_name": "live",
        "provider": "vertex_ai",
        "model": MODEL,
        "vertex_project": "my-proj",
        "vertex_credentials": credentials,
    }
    fields.update(kw)
    return ModelEntry(**fields)  # type: ignore[arg-type]


def header(target: UpstreamTarget, name: str) -> str | None:
    return next((v for k, v in target.headers if k.lower() == name.lower()), None)


# --- Vertex with a service account and a real token endpoint --------------------------------------------


@pytest.mark.parametrize(
    ("location", "host"),
    [
        ("us-central1", "us-central1-aiplatform.googleapis.com"),
        ("europe-west4", "europe-west4-aiplatform.googleapis.com"),
        ("global", "aiplatform.googleapis.com"),
        ("us", "aiplatform.us.rep.googleapis.com"),
        ("eu", "aiplatform.eu.rep.googleapis.com"),
    ],
)
async def test_vertex_target(ts: TokenServer, sa: str, location: str, host: str) -> None:
    up = Upstream(vertex(sa, vertex_location=location))
    t = await up.target()
    assert t.backend == "vertex"
    assert t.url == f"wss://{host}{VERTEX_PATH}"
    assert t.model_path == f"projects/my-proj/locations/{location}/publishers/google/models/{MODEL}"
    assert ts.requests == 1
    assert t.headers == (("Authorization", f"Bearer {ts.token}"),)
    assert ts.token.startswith("ya29.test-")
    claims = ts.claims[0]
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert claims["iss"] == json.loads(Path(sa).read_text())["client_email"]


async def test_vertex_api_version_and_project_from_credentials(tmp_path: Path, ts: TokenServer) -> None:
    path = write_service_account(tmp_path / "sa.json", ts.url, project_id="sa-project")
    t = await Upstream(vertex(path, vertex_project=None, api_version="v1")).target()
    assert (
        t.url
        == "wss://us-central1-aiplatform.googleapis.com/ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent"
    )
    assert t.model_path.startswith("projects/sa-project/locations/us-central1/")


async def test_quota_project_header(tmp_path: Path, ts: TokenServer) -> None:
    path = write_service_account(tmp_path / "sa.json", ts.url, quota_project_id="billing-proj")
    t = await Upstream(vertex(path)).target()
    assert header(t, "x-goog-user-project") == "billing-proj"
    assert header(t, "Authorization") == f"Bearer {ts.token}"


async def test_no_quota_header_without_quota_project(ts: TokenServer, sa: str) -> None:
    t = await Upstream(vertex(sa)).target()
    assert header(t, "x-goog-user-project") is None


async def test_inline_credentials(tmp_path: Path, ts: TokenServer, sa: str) -> None:
    inline = Path(sa).read_text()
    t = await Upstream(vertex(inline)).target()
    assert header(t, "Authorization") == f"Bearer {ts.token}"


async def test_authorized_user_credentials(ts: TokenServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # google-auth pins gcloud user credentials to Google's token endpoint, whatever the file says.
    monkeypatch.setattr("google.oauth2.credentials._GOOGLE_OAUTH2_TOKEN_ENDPOINT", ts.url)
    info = {
        "type": "authorized_user",
        "client_id": "cid",
        "client_secret": "csecret",
        "refresh_token": "1//refresh",
        "token_uri": ts.url,
        "quota_project_id": "user-quota",
    }
    t = await Upstream(vertex(json.dumps(info))).target()
    assert header(t, "Authorization") == f"Bearer {ts.token}"
    assert header(t, "x-goog-user-project") == "user-quota"


async def test_token_cached_across_concurrent_sessions(ts: TokenServer, sa: str) -> None:
    ts.delay = 0.2  # every caller arrives while the first refresh is still in flight
    up = Upstream(vertex(sa))
    targets: list[UpstreamTarget] = []

    async def one() -> None:
        targets.append(await up.target())

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(one)
    assert ts.requests == 1
    assert len(targets) == 50
    assert {header(t, "Authorization") for t in targets} == {"Bearer ya29.test-1"}
    await up.target()
    assert ts.requests == 1


async def test_late_arrivals_share_the_refresh_in_flight(ts: TokenServer, sa: str) -> None:
    ts.delay = 0.3
    up = Upstream(vertex(sa))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.target)
        await trio.sleep(0.1)  # the first refresh is now waiting on the token server
        for _ in range(5):
            nursery.start_soon(up.target)
    assert ts.requests == 1


async def test_refreshed_when_near_expiry(ts: TokenServer, sa: str) -> None:
    ts.expires_in = 60
    up = Upstream(vertex(sa))
    first = await up.target()
    assert header(first, "Authorization") == "Bearer ya29.test-1"
    second = await up.target()
    assert ts.requests == 2
    assert header(second, "Authorization") == "Bearer ya29.test-2"


async def test_short_lived_token_shared_by_a_burst(ts: TokenServer, sa: str) -> None:
    ts.expires_in = 120
    ts.delay = 0.2
    up = Upstream(vertex(sa))
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(up.target)
    assert ts.requests == 1


async def test_refresh_failure(ts: TokenServer, sa: str) -> None:
    ts.fail = True
    up = Upstream(vertex(sa))
    with pytest.raises(UpstreamAuthError) as info:
        await up.target()
    msg = str(info.value)
    assert msg.startswith("could not get a Google access token for model live: RefreshError: ")
    assert "invalid_grant" in msg
    key = json.loads(Path(sa).read_text())["private_key"]
    assert "PRIVATE KEY" not in msg and key.splitlines()[1] not in msg
    assert "ya29" not in msg and "eyJ" not in msg
    # Recovery: the next call tries again.
    ts.fail = False
    t = await up.target()
    assert header(t, "Authorization") == f"Bearer {ts.token}"


async def test_concurrent_failures_share_one_request(ts: TokenServer, sa: str) -> None:
    ts.fail = True
    ts.delay = 0.2
    up = Upstream(vertex(sa))
    failures: list[str] = []

    async def one() -> None:
        try:
            await up.target()
        except UpstreamAuthError as exc:
            failures.append(str(exc))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
    assert len(failures) == 10
    assert ts.requests == 1


async def test_bad_credentials_file(tmp_path: Path) -> None:
    bad_key = (
        "-----BEGIN PRIVATE KEY-----\n"
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDSecretBits\n"
        "-----END PRIVATE KEY-----\n"
    )
    info = {
        "type": "service_account",
        "client_email": "x@y.iam.gserviceaccount.com",
        "token_uri": "http://127.0.0.1:9/token",
        "private_key": bad_key,
    }
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(info))
    with pytest.raises(UpstreamAuthError) as exc_info:
        await Upstream(vertex(str(path))).target()
    msg = str(exc_info.value)
    assert msg.startswith(f"could not load Google credentials for model live from vertex_credentials file {path}: ")
    assert "SecretBits" not in msg and "MIIE" not in msg

    with pytest.raises(UpstreamAuthError) as exc_info:
        await Upstream(vertex(json.dumps(info))).target()
    assert "from the inline vertex_credentials JSON" in str(exc_info.value)
    assert "SecretBits" not in str(exc_info.value)

    missing = tmp_path / "gone.json"
    with pytest.raises(UpstreamAuthError, match="FileNotFoundError"):
        await Upstream(vertex(str(missing))).target()

    with pytest.raises(UpstreamAuthError, match="unsupported credentials type 'external_account'"):
        await Upstream(vertex(json.dumps({"type": "external_account"}))).target()


async def test_adc_and_its_project(tmp_path: Path, ts: TokenServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    path = write_service_account(tmp_path / "adc.json", ts.url, project_id="adc-project")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", path)
    monkeypatch.setenv("GOOGLE_CLOUD_QUOTA_PROJECT", "q")  # how ADC is told the quota project
    t = await Upstream(vertex(None, vertex_project=None)).target()
    assert t.model_path == f"projects/adc-project/locations/us-central1/publishers/google/models/{MODEL}"
    assert header(t, "Authorization") == f"Bearer {ts.token}"
    assert header(t, "x-goog-user-project") == "q"


async def test_no_project_anywhere(tmp_path: Path, ts: TokenServer) -> None:
    path = write_service_account(tmp_path / "sa.json", ts.url, project_id=None)
    with pytest.raises(
        UpstreamAuthError, match=r"no Google Cloud project for model live: set litellm_params\.vertex_project"
    ):
        await Upstream(vertex(path, vertex_project=None)).target()


async def test_model_path_forms(ts: TokenServer, sa: str) -> None:
    full = "projects/x/locations/y/publishers/google/models/z"
    assert (await Upstream(vertex(sa, model=full)).target()).model_path == full
    publisher = "publishers/google/models/z"
    t = await Upstream(vertex(sa, model=publisher)).target()
    assert t.model_path == "projects/my-proj/locations/us-central1/publishers/google/models/z"


# --- Gemini API (AI Studio) ------------------------------------------------------------------------------


def gemini(**kw: object) -> ModelEntry:
    fields: dict[str, object] = {
        "model_name": "studio",
        "provider": "gemini",
        "model": "gemini-2.0-flash-live-001",
        "api_key": "AIzaSyTestKey0123456789",
    }
    fields.update(kw)
    return ModelEntry(**fields)  # type: ignore[arg-type]


async def test_gemini_target() -> None:
    up = Upstream(gemini())
    t = await up.target()
    assert t == UpstreamTarget(
        url=f"wss://generativelanguage.googleapis.com{GEMINI_PATH}",
        headers=(("x-goog-api-key", "AIzaSyTestKey0123456789"),),
        model_path="models/gemini-2.0-flash-live-001",
        backend="gemini",
    )
    assert "AIza" not in t.url and "key=" not in t.url
    assert "AIza" not in repr(t)
    assert "AIza" not in up.describe()
    assert "generativelanguage.googleapis.com" in up.describe()
    assert "gemini-2.0-flash-live-001" in up.describe()


async def test_gemini_version_and_prefixed_model() -> None:
    t = await Upstream(gemini(api_version="v1alpha", model="models/x")).target()
    assert t.url.endswith("/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent")
    assert t.model_path == "models/x"


async def test_gemini_auth_none() -> None:
    t = await Upstream(gemini(api_key=None, upstream_auth="none")).target()
    assert t.headers == ()


# --- api_base and upstream_auth none ----------------------------------------------------------------------


async def test_api_base_override(ts: TokenServer, sa: str) -> None:
    t = await Upstream(vertex(sa, api_base="ws://127.0.0.1:8123", vertex_location="europe-west4")).target()
    assert t.url == f"ws://127.0.0.1:8123{VERTEX_PATH}"
    assert t.model_path.startswith("projects/my-proj/locations/europe-west4/")
    assert header(t, "Authorization") == f"Bearer {ts.token}"
    t = await Upstream(gemini(api_base="wss://proxy.example.com/prefix")).target()
    assert t.url == f"wss://proxy.example.com/prefix{GEMINI_PATH}"
    assert header(t, "x-goog-api-key") == "AIzaSyTestKey0123456789"


async def test_vertex_auth_none_sends_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # Were credentials loaded, this would fail: the file does not exist.
    entry = vertex("/nonexistent.json", vertex_project=None, upstream_auth="none", api_base="ws://127.0.0.1:1")
    t = await Upstream(entry).target()
    assert t.headers == ()
    assert t.url == f"ws://127.0.0.1:1{VERTEX_PATH}"
    assert t.model_path == f"projects/relay-emulator/locations/us-central1/publishers/google/models/{MODEL}"
    t = await Upstream(attrs.evolve(entry, vertex_project="emu")).target()
    assert t.model_path.startswith("projects/emu/")


# --- describe and scrub -------------------------------------------------------------------------------


async def test_describe_is_safe(ts: TokenServer, sa: str) -> None:
    up = Upstream(vertex(sa, api_key="AIzaShouldNotShow"))
    await up.target()
    text = up.describe()
    assert text.startswith(
        "live: vertex gemini-2.0-flash-live-preview-04-09 at wss://us-central1-aiplatform.googleapis.com"
    )
    assert "my-proj" in text and "us-central1" in text
    assert ts.token not in text and "AIza" not in text and "BEGIN" not in text
    assert "from credentials" in Upstream(vertex(None, vertex_project=None)).describe()
    assert "auth none" in Upstream(vertex(None, upstream_auth="none")).describe()


def test_scrub() -> None:
    text = (
        "token ya29.a0AfH6SMBx-abc_def, key AIzaSyA1234567890abcdefghijklmnopqrstu, "
        "jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln, Bearer abc.def, "
        "blob Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZX, "
        "id 0123456789abcdef0123456789abcdef01234567, "
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
    )
    out = scrub(text, ("hunter2",))
    for leak in ("ya29", "AIza", "eyJ", "abc.def", "Zm9v", "0123456789abcdef", "MIIE", "BEGIN"):
        assert leak not in out
    assert scrub("path /tmp/pytest-of-root/test_refresh_failure0/sa.json is fine") == (
        "path /tmp/pytest-of-root/test_refresh_failure0/sa.json is fine"
    )
    assert scrub("the password is hunter2", ("hunter2",)) == "the password is [redacted]"
    assert len(scrub("x" * 2000)) < 600


async def test_a_session_cancelled_while_credentials_load_leaves_the_model_usable(tmp_path: Path,
                                                                                  ts: TokenServer) -> None:
    """Found by the hostile-client fuzzer: a session cancelled while the service-account file was being read
    left credentials without their HTTP transport, and every later token refresh of that model failed with
    "'NoneType' object is not callable".  The file is a FIFO here, so the read waits until the test writes."""
    import os
    import threading

    key = Path(write_service_account(tmp_path / "sa.json", ts.url)).read_text()
    fifo = tmp_path / "sa-fifo.json"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "w") as pipe:  # blocks until the relay opens the FIFO to read it
            pipe.write(key)

    up = Upstream(vertex(str(fifo)))
    with trio.move_on_after(0.2) as scope:
        # The read blocks in a worker thread; the cancel lands while it does, and takes effect right after.
        timer = threading.Timer(0.5, feed)
        timer.daemon = True  # a writer nobody reads from must not keep the test process alive
        timer.start()
        await up.target()
    assert scope.cancelled_caught
    threading.Thread(target=feed, daemon=True).start()
    target = await up.target()  # the next session: loads the file again, with a transport of its own
    assert ts.issued(str(header(target, "Authorization")).removeprefix("Bearer "))


async def test_an_abandoned_token_refresh_does_not_share_its_credentials(sa: str, ts: TokenServer) -> None:
    ts.delay = 0.5  # the token endpoint stalls: the first refresh is cancelled and abandoned while it waits
    up = Upstream(vertex(sa))
    with trio.move_on_after(0.1):
        await up.target()
    ts.delay = 0.0
    target = await up.target()
    assert ts.issued(str(header(target, "Authorization")).removeprefix("Bearer "))
