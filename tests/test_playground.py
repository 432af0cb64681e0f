"""The browser playground (relay/playground/): its HTTP routes, and the page itself in a real browser.

The browser is Debian's Chromium (/usr/bin/chromium, the `chromium` package, which .ci/run installs when it is
missing), driven headless by Playwright from PyPI; Playwright's own browser downloads are never used. It runs
against `python -m relay serve` on the built-in emulator, with flags that keep it off the (closed) network. Every
page's console errors, warnings and uncaught exceptions fail the test. Screenshots go to test-artifacts/playground/
(git-ignored); with RELAY_UPDATE_SCREENSHOT=1 the mid-conversation one also replaces docs/playground.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import textwrap
import urllib.error
import urllib.request
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the HTTP tests run without it; the browser tests say what is missing (_need_browser)
    expect = sync_playwright = None

from relay.config import ConfigError, load_config
from relay.http import HttpApp
from tests.test_cli import ROOT, relay_process

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "playground"
DOCS_SCREENSHOT = ROOT / "docs" / "playground.png"
MODEL = "vertex_gemini_live_text"
TIMEOUT_MS = 15_000
# No network beyond the relay (this machine's is closed): these keep Chromium from dialling out at start.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def get(port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None,
        ) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


@pytest.fixture(scope="module")
def relay() -> Iterator[int]:
    with relay_process() as (_, port, banner):
        assert f"playground http://127.0.0.1:{port}/" in banner
        yield port


# ---------------------------------------------------------------- HTTP: routes, types, caching, switched off

ASSETS = {
    "/": "text/html; charset=utf-8",
    "/playground/style.css": "text/css; charset=utf-8",
    "/playground/app.js": "text/javascript; charset=utf-8",
    "/playground/audio-worklet.js": "text/javascript; charset=utf-8",
    "/playground/icon.svg": "image/svg+xml",
}


def test_static_routes_answer_with_their_content_types_and_revalidate(relay):
    for path, content_type in ASSETS.items():
        status, headers, body = get(relay, path)
        assert (status, headers["content-type"]) == (200, content_type), path
        assert headers["cache-control"] == "no-cache" and headers["x-content-type-options"] == "nosniff"
        assert int(headers["content-length"]) == len(body) > 0
        # the browser revalidates with the ETag and gets a bodiless 304 while the file is unchanged
        status, again, body = get(relay, path, headers={"If-None-Match": headers["etag"]})
        assert (status, body, again["etag"]) == (304, b"", headers["etag"]), path
        head = get(relay, path, "HEAD")
        assert head[0] == 200 and head[2] == b""
    page = get(relay, "/")[1]
    assert "script-src 'self'" in page["content-security-policy"] and page["referrer-policy"] == "no-referrer"
    html = get(relay, "/?utm=1")[2].decode()
    assert 'data-auth="none"' in html
    # nothing from elsewhere: every URL in the page is relative to the relay
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)


@pytest.mark.parametrize("path", ["/playground/", "/playground/__init__.py", "/playground/../pyproject.toml",
                                  "/playground/%2e%2e/__init__.py", "/playground/app.js%00", "/index.html",
                                  "/playground/APP.JS", "/relay/playground/app.js"])
def test_only_the_known_files_are_served(relay, path):
    status, headers, body = get(relay, path)
    assert (status, headers["content-type"]) == (404, "application/json"), path
    assert json.loads(body)["error"]["code"] == "not_found"


def test_the_other_routes_still_answer_beside_the_playground(relay):
    assert get(relay, "/health")[0] == 200
    assert get(relay, "/ready")[0] == 200
    assert get(relay, "/metrics")[1]["content-type"].startswith("text/plain")
    status, _, body = get(relay, "/v1/models")
    assert status == 200 and MODEL in [m["id"] for m in json.loads(body)["data"]]
    assert get(relay, "/", "POST")[0] == 405


@pytest.mark.parametrize("workers", ["1", "2"])
def test_no_playground_flag_gives_the_json_404_at_the_root(workers):
    with relay_process("--no-playground", "--workers", workers) as (_, port, banner):
        assert "playground" not in banner
        for path in ASSETS:
            status, headers, body = get(port, path)
            assert (status, headers["content-type"]) == (404, "application/json"), path
            assert "playground: /" not in json.loads(body)["error"]["message"]
        assert get(port, "/health")[0] == 200


def test_general_settings_playground_switches_it(tmp_path):
    def config(value: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(textwrap.dedent(f"""\
            model_list:
              - model_name: m
                litellm_params: {{model: vertex_ai/gemini-3.8-live, vertex_project: p}}
            general_settings:
              playground: {value}
            """))
        return path

    assert load_config(str(config("false")))[0].playground is False
    assert load_config(str(config("true")))[0].playground is True
    with pytest.raises(ConfigError, match=r"general_settings.playground: must be true or false, got 'no'"):
        load_config(str(config("'no'")))
    app = HttpApp(lambda: True, lambda: ("text/plain", b""), playground=False)
    assert app.respond("GET", "/")[0] == 404
    assert HttpApp(lambda: True, lambda: ("text/plain", b"")).respond("GET", "/")[:2] == (200, ASSETS["/"])


def test_the_page_asks_for_a_key_where_the_relay_has_keys():
    with relay_process(env={"RELAY_MASTER_KEY": "sk-play"}) as (_, port, _banner):
        assert 'data-auth="required"' in get(port, "/")[2].decode()
        assert get(port, "/playground/app.js")[0] == 200  # the files themselves need no key


# ---------------------------------------------------------------- the page in Chromium


def _need_browser() -> None:
    """Chromium and Playwright, or a clear failure in CI (.ci/run installs both); a skip elsewhere."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (Debian package chromium: apt-get install -y chromium)")
    if sync_playwright is None:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        message = "the browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class Browser:
    """One Chromium with a fresh profile; each page's console errors, warnings and page errors are collected."""

    def __init__(self, context, name: str) -> None:
        self.context = context
        self.name = name
        self.problems: list[str] = []

    def page(self, port: int, viewport: dict[str, int] = LAPTOP):
        page = self.context.new_page()
        page.set_viewport_size(viewport)
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: m.type in ("error", "warning") and self.problems.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.goto(f"http://127.0.0.1:{port}/")
        return page

    def screenshot(self, page, label: str = "") -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}{'-' + label if label else ''}.png"
        page.screenshot(path=str(path))
        print(f"screenshot: {path}")
        return path


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Callable[..., Browser]]:
    """browser(mic_wav=None) → a Browser; with a WAV file, Chromium's fake microphone plays it in a loop."""
    _need_browser()
    opened: list[Browser] = []
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="relay-chromium-") as profiles:

        def launch(mic_wav: Path | None = None) -> Browser:
            args = list(CHROMIUM_ARGS)
            if mic_wav is not None:
                args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                         f"--use-file-for-fake-audio-capture={mic_wav}"]
            context = pw.chromium.launch_persistent_context(
                tempfile.mkdtemp(dir=profiles), executable_path=str(CHROMIUM), headless=True, args=args,
                viewport=LAPTOP)
            opened.append(Browser(context, request.node.name.replace("[", "-").rstrip("]")))
            return opened[-1]

        try:
            yield launch
        finally:
            for b in opened:
                for page in b.context.pages:
                    if not page.is_closed() and page.url.startswith("http"):
                        b.screenshot(page, "end")
                b.context.close()
    problems = [p for b in opened for p in b.problems]
    assert not problems, "the page logged errors or warnings:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the fake microphone says, over and over: 600 ms of a loud tone, then 1 s of silence (48 kHz mono)."""
    rate = 48000
    t = np.arange(rate * 6 // 10) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * np.minimum(1, np.minimum(t, t[-1] - t) / 0.005)  # 5 ms fades
    pcm = np.concatenate([tone, np.zeros(rate)])
    path = tmp_path_factory.mktemp("mic") / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((pcm * 32767).astype("<i2").tobytes())
    return path


def connect(page, model: str = MODEL) -> None:
    expect(page.locator("#model-help")).to_have_attribute("data-state", "ok")
    page.select_option("#model", model)
    page.click("#connect")
    expect(page.locator("#status")).to_have_attribute("data-status", "connected")
    # the session.update went out first, and was answered
    expect(page.locator('#log li[data-dir="out"]').first).to_have_attribute("data-type", "session.update")
    expect(page.locator('#log li[data-dir="in"][data-type="session.updated"]')).to_have_count(1)


def say(page, text: str) -> None:
    page.fill("#text", text)
    page.click("#send")


def assistant(page, text: str | re.Pattern[str]):
    """Wait for an assistant message that says `text`, finished."""
    node = page.locator('#transcript .msg[data-role="assistant"]', has_text=text).last
    expect(node).to_have_attribute("data-state", "done")
    expect(node.locator(".text")).to_have_text(text)
    return node


def played_chunks(page) -> int:
    return int(page.locator("#player").get_attribute("data-chunks-played"))


def test_a_text_turn_shows_the_echo_with_usage_and_every_event(relay, browser):
    b = browser()
    page = b.page(relay)
    models = page.locator("#model option")
    expect(models).to_have_count(1)  # the transcription and translation models are not for conversations
    expect(models).to_have_text([MODEL])
    connect(page)
    page.select_option("#reply", "text")
    page.click("#apply")
    say(page, "hello from the browser")
    expect(page.locator('#transcript .msg[data-role="user"] .text')).to_have_text("hello from the browser")
    assistant(page, "Echo: hello from the browser")
    usage = page.locator("#transcript .usage").last
    expect(usage).to_have_attribute("data-status", "completed")
    assert int(usage.get_attribute("data-output-tokens")) > 0
    assert int(page.locator("#totals").get_attribute("data-total-tokens")) > 0
    # the log holds what was sent and received, newest last, each expandable to its JSON
    sent = page.locator('#log li[data-dir="out"]')
    expect(sent).to_have_count(4)  # session.update x2, conversation.item.create, response.create
    expect(page.locator("#log li").last).to_have_attribute("data-type", "response.done")
    item = page.locator('#log li[data-dir="out"][data-type="conversation.item.create"]')
    item.locator("summary").click()
    assert json.loads(item.locator("pre").inner_text())["item"]["content"][0]["text"] == "hello from the browser"
    assert int(page.locator("#log").get_attribute("data-count")) == page.locator("#log li").count()
    # the last event opened at the bottom of the log: the log scrolls to show its JSON, not just a line or two
    done = page.locator("#log li").last
    done.locator("summary").click()
    log_box, pre_box = page.locator("#log").bounding_box(), done.locator("pre").bounding_box()
    assert pre_box["height"] > 200 and pre_box["y"] + pre_box["height"] <= log_box["y"] + log_box["height"] + 1
    # text replies make no sound
    assert page.locator("#player").get_attribute("data-chunks-received") == "0"
    b.screenshot(page, "text-turn")


def test_a_spoken_reply_to_text_plays_through_the_audio_worklet(relay, browser):
    page = browser().page(relay)
    connect(page)
    say(page, "speak to me")
    node = assistant(page, "Echo: speak to me")
    expect(node).to_have_attribute("data-kind", "audio")
    player = page.locator("#player")
    expect(player).to_have_attribute("data-chunks-played", re.compile(r"^[1-9]"))
    expect(player).to_have_attribute("data-state", "idle")  # played to the end
    assert player.get_attribute("data-chunks-played") == player.get_attribute("data-chunks-received")


def test_stop_cancels_the_response_in_progress(relay, browser):
    page = browser().page(relay)
    connect(page)
    say(page, "[fault:slow] one two three four five six seven eight")  # the emulator waits 0.5 s between words
    reply = page.locator('#transcript .msg[data-role="assistant"]')
    expect(reply.locator(".text")).not_to_be_empty()
    expect(page.locator("#player")).to_have_attribute("data-chunks-received", re.compile(r"^[1-9]"))
    page.click("#cancel")
    usage = page.locator("#transcript .usage")
    expect(usage).to_have_attribute("data-status", "cancelled")
    expect(reply).to_have_attribute("data-state", "incomplete")
    expect(page.locator("#cancel")).to_be_disabled()
    expect(page.locator("#player")).to_have_attribute("data-state", "idle")
    expect(page.locator('#log li[data-dir="out"][data-type="response.cancel"]')).to_have_count(1)
    assert "eight" not in reply.inner_text()


def test_the_microphone_is_heard_transcribed_and_answered_with_speech(relay, browser, mic_wav):
    b = browser(mic_wav)
    page = b.page(relay)
    connect(page)
    # first a text turn and a call of the example tool the tools box starts with, for the screenshot
    say(page, "hello, I will talk now")
    assistant(page, "Echo: hello, I will talk now")
    say(page, "what does get_time say for Europe/Paris?")
    call = page.locator('#transcript .msg[data-role="tool"][data-name="get_time"]')
    call.locator("textarea").fill('{"time": "09:41"}')
    call.locator("button.tool-send").click()
    assistant(page, 'Result: get_time {"time":"09:41"}')
    before = played_chunks(page)
    page.click("#mic")
    expect(page.locator("#mic")).to_have_attribute("data-state", "on")
    # the looped tone is a spoken turn: server VAD takes it, the emulator transcribes and answers it in speech
    user = page.locator('#transcript .msg[data-role="user"][data-kind="audio"]').first
    expect(user.locator(".text")).to_have_text(re.compile(r"^audio \d+ ms$"))
    heard = user.locator(".text").inner_text()
    reply = assistant(page, f"Echo: {heard}")
    expect(reply).to_have_attribute("data-kind", "audio")
    page.wait_for_function(f"() => Number(document.getElementById('player').dataset.chunksPlayed) > {before}")
    page.click("#mic")
    expect(page.locator("#mic")).to_have_attribute("data-state", "off")
    appends = page.locator('#log li[data-dir="out"][data-type="input_audio_buffer.append"]')
    assert appends.count() >= 10
    appends.first.locator("summary").click()
    shown = json.loads(appends.first.locator("pre").inner_text())
    assert shown["audio"].endswith("characters of base64 audio>")  # the log shows the size, not the audio
    expect(page.locator('#log li[data-type="conversation.item.input_audio_transcription.completed"]').first
             ).to_be_attached()
    expect(page.locator("#player")).to_have_attribute("data-state", "idle")
    page.check("#hide-audio")
    transcribed = page.locator('#log li[data-type="conversation.item.input_audio_transcription.completed"]').first
    transcribed.locator("summary").click()  # one event open, to show its JSON
    transcribed.locator("pre").scroll_into_view_if_needed()
    shot = b.screenshot(page, "conversation")
    if os.environ.get("RELAY_UPDATE_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
        assert DOCS_SCREENSHOT.stat().st_size < 300_000


def test_push_to_talk_commits_the_turn_and_asks_for_the_reply(relay, browser, mic_wav):
    page = browser(mic_wav).page(relay)
    page.select_option("#turns", "manual")
    connect(page)
    update = page.locator('#log li[data-dir="out"][data-type="session.update"]')
    update.locator("summary").click()
    assert json.loads(update.locator("pre").inner_text())["session"]["audio"]["input"]["turn_detection"] is None
    talk = page.locator("#talk")
    expect(talk).to_be_visible()
    expect(page.locator("#mic")).to_be_hidden()
    talk.hover()
    page.mouse.down()
    expect(talk).to_have_attribute("data-state", "talking")
    # hold until a second of audio went out (with manual turns the emulator hears all of it, loud or not)
    page.wait_for_function(
        "() => document.querySelectorAll('#log li[data-type=\"input_audio_buffer.append\"]').length >= 20")
    page.mouse.up()
    expect(talk).to_have_attribute("data-state", "idle")
    user = page.locator('#transcript .msg[data-role="user"][data-kind="audio"]').first
    expect(user.locator(".text")).to_have_text(re.compile(r"^audio \d+ ms$"))
    assistant(page, f"Echo: {user.locator('.text').inner_text()}")
    out = page.locator('#log li[data-dir="out"]')
    types = [t for t in out.evaluate_all("items => items.map(i => i.dataset.type)")
             if t != "input_audio_buffer.append"]
    assert types[-2:] == ["input_audio_buffer.commit", "response.create"]
    # no audio goes out between turns
    count = page.locator('#log li[data-type="input_audio_buffer.append"]').count()
    page.wait_for_timeout(300)
    assert page.locator('#log li[data-type="input_audio_buffer.append"]').count() == count


APPENDS = '#log li[data-dir="out"][data-type="input_audio_buffer.append"]'


def sent_types(page) -> list[str]:
    """The types of the events the page sent, oldest first, without the audio appends."""
    types = page.locator('#log li[data-dir="out"]').evaluate_all("items => items.map(i => i.dataset.type)")
    return [t for t in types if t != "input_audio_buffer.append"]


# In the page: do `action` ("stop-mic": click Start/Stop mic; "release-talk": let go of Hold to talk) right
# after `when` (appends: the log holding that many appends; "first-chunk": the level meter showing the first
# chunk the microphone captured), in the same task: no other microphone chunk comes in between, so the test
# knows exactly how much audio the page had when the mic stopped or the button was released.
ACT_WHEN = """([when, action]) => {
  const act = () => {
    if (action === "stop-mic") document.getElementById("mic").click();
    else document.getElementById("talk").dispatchEvent(new KeyboardEvent("keyup", { key: " ", bubbles: true }));
  };
  const log = document.getElementById("log");
  const level = document.getElementById("level");
  let micOn = false;
  const observer = new MutationObserver((records) => {
    for (const r of records) {
      if (when === "first-chunk") {
        if (r.attributeName === "data-active") micOn = level.dataset.active === "true";
        else if (micOn && r.attributeName === "value") return observer.disconnect() || act();
      } else if (log.querySelectorAll('li[data-dir="out"][data-type="input_audio_buffer.append"]').length >= when) {
        return observer.disconnect() || act();
      }
    }
  });
  if (when === "first-chunk") observer.observe(level, { attributes: true, attributeFilter: ["data-active", "value"] });
  else observer.observe(log, { childList: true });
}"""


def act_when(page, when: int | str, action: str) -> None:
    page.evaluate(ACT_WHEN, [when, action])


def test_switching_turn_detection_closes_the_mic_and_shows_it(relay, browser, mic_wav):
    page = browser(mic_wav).page(relay)
    mic, talk, level, turns_help = (page.locator(s) for s in ("#mic", "#talk", "#level", "#turns-help"))
    appends = page.locator(APPENDS)
    page.select_option("#turns", "manual")
    expect(turns_help).to_contain_text("Push to talk")  # the help follows the choice
    connect(page)
    # a push-to-talk turn of 300 ms: the mic stays open after it (the level meter shows it), sending nothing
    act_when(page, 6, "release-talk")
    talk.focus()
    page.keyboard.down("Space")
    user = page.locator('#transcript .msg[data-role="user"][data-kind="audio"]')
    expect(user.locator(".text")).to_have_text(["audio 300 ms"])
    assistant(page, "Echo: audio 300 ms")
    page.keyboard.up("Space")
    expect(level).to_have_attribute("data-active", "true")
    # to server VAD: the mic closes, the page shows it closed and nothing streams; Start mic gives a VAD turn
    page.select_option("#turns", "server_vad")
    expect(turns_help).to_have_text(re.compile(r"^Hands-free: .* when you pause\. Update session to switch\.$"))
    page.click("#apply")
    expect(page.locator('#log li[data-dir="in"][data-type="session.updated"]')).to_have_count(2)
    expect(turns_help).not_to_contain_text("Update session")
    expect(talk).to_be_hidden()
    expect(mic).to_be_visible()
    expect(mic).to_have_attribute("data-state", "off")
    expect(mic).to_have_text("Start mic")
    expect(level).to_have_attribute("data-active", "false")
    count = appends.count()
    page.wait_for_timeout(300)
    assert appends.count() == count
    mic.click()
    expect(mic).to_have_attribute("data-state", "on")
    expect(mic).to_have_text("Stop mic")
    expect(user).to_have_count(2)
    expect(user.last.locator(".text")).to_have_text(re.compile(r"^audio \d+ ms$"))
    assistant(page, f"Echo: {user.last.locator('.text').inner_text()}")
    expect(page.locator('#log li[data-dir="in"][data-type="input_audio_buffer.speech_started"]').first
           ).to_be_attached()
    # and back to push-to-talk while the mic streams: closed again, the audio VAD had not taken dropped
    page.select_option("#turns", "manual")
    page.click("#apply")
    expect(page.locator('#log li[data-dir="in"][data-type="session.updated"]')).to_have_count(3)
    expect(mic).to_be_hidden()
    expect(mic).to_have_attribute("data-state", "off")
    expect(level).to_have_attribute("data-active", "false")
    expect(talk).to_be_visible()
    assert sent_types(page)[-2:] == ["input_audio_buffer.clear", "session.update"]
    count = appends.count()
    page.wait_for_timeout(300)
    assert appends.count() == count


def test_a_tap_on_hold_to_talk_leaves_no_audio_for_the_next_turn(relay, browser, mic_wav):
    page = browser(mic_wav).page(relay)
    page.select_option("#turns", "manual")
    page.select_option("#reply", "text")
    connect(page)
    act_when(page, "first-chunk", "release-talk")  # let go once the mic has given its first 50 ms
    page.locator("#talk").focus()
    page.keyboard.down("Space")
    expect(page.locator('#transcript .msg[data-role="notice"]').last).to_have_text("Hold the button while you speak.")
    page.keyboard.up("Space")
    expect(page.locator("#talk")).to_have_attribute("data-state", "idle")
    expect(page.locator('#log li[data-dir="in"][data-type="input_audio_buffer.cleared"]')).to_have_count(1)
    say(page, "typed after a tap")
    assistant(page, "Echo: typed after a tap")  # answered as text, not as the tap's audio
    expect(page.locator(APPENDS)).to_have_count(0)  # Gemini hears audio as it comes: a tap is not sent at all
    assert sent_types(page)[-3:] == ["input_audio_buffer.clear", "conversation.item.create", "response.create"]
    expect(page.locator('#transcript .msg[data-role="user"] .text')).to_have_text(["typed after a tap"])


def test_stopping_the_mic_mid_speech_leaves_no_empty_turn(relay, browser, mic_wav):
    page = browser(mic_wav).page(relay)
    page.select_option("#reply", "text")
    connect(page)
    act_when(page, 3, "stop-mic")  # stop 150 ms into the tone, before VAD has a turn
    page.click("#mic")
    expect(page.locator("#mic")).to_have_attribute("data-state", "off")
    expect(page.locator('#log li[data-dir="in"][data-type="input_audio_buffer.cleared"]')).to_have_count(1)
    say(page, "typed after the mic")
    assistant(page, "Echo: typed after the mic")
    # no spoken turn, empty or not, came of the audio stopped
    expect(page.locator('#transcript .msg[data-role="user"] .text')).to_have_text(["typed after the mic"])
    expect(page.locator('#log li[data-type="input_audio_buffer.committed"]')).to_have_count(0)
    expect(page.locator(APPENDS)).to_have_count(3)
    assert sent_types(page)[-3:] == ["input_audio_buffer.clear", "conversation.item.create", "response.create"]


def test_a_tool_call_is_shown_and_answered_by_hand(relay, browser):
    page = browser().page(relay)
    tool = {"type": "function", "name": "get_time", "description": "The time in a time zone",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
    page.fill("#tools", "not json")
    expect(page.locator("#tools")).to_have_attribute("aria-invalid", "true")
    page.click("#connect")  # refused with the reason shown, no connection
    expect(page.locator("#tools-help")).to_have_attribute("data-state", "error")
    expect(page.locator("#status")).to_have_attribute("data-status", "disconnected")
    page.fill("#tools", json.dumps([tool]))
    expect(page.locator("#tools")).to_have_attribute("aria-invalid", "false")
    page.select_option("#reply", "text")
    connect(page)
    say(page, "what does get_time say for UTC?")
    call = page.locator('#transcript .msg[data-role="tool"]')
    expect(call).to_have_attribute("data-name", "get_time")
    expect(call.locator(".call")).to_have_text('get_time({"zone":"example"})')
    usage = page.locator("#transcript .usage")
    expect(usage).to_have_count(1)  # the call's response is done
    expect(usage).to_have_attribute("data-total-tokens", "0")
    expect(usage).to_be_hidden()  # no line of zeros under the call
    call.locator("textarea").fill('{"time": "12:00"}')
    call.locator("button.tool-send").click()
    expect(call).to_have_attribute("data-state", "answered")
    assistant(page, 'Result: get_time {"time":"12:00"}')
    expect(usage.last).to_have_text(re.compile(r"^[1-9]\d* tokens · in "))
    sent = page.locator('#log li[data-dir="out"][data-type="conversation.item.create"]').last
    sent.locator("summary").click()
    output = json.loads(sent.locator("pre").inner_text())["item"]
    assert output == {"type": "function_call_output", "call_id": call.get_attribute("data-call-id"),
                      "output": '{"time": "12:00"}'}
    expect(page.locator('#log li[data-dir="out"]').last).to_have_attribute("data-type", "response.create")


def test_errors_and_closed_connections_are_shown_plainly(relay, browser):
    page = browser().page(relay)
    connect(page)
    # Gemini closes mid-session: the relay's error event is shown in the conversation
    say(page, "[fault:close-1008]")
    error = page.locator('#transcript .msg[data-role="error"]')
    expect(error).to_have_text("Error (upstream_closed): Gemini closed the connection (1008): Requested entity "
                                 "was not found.")
    expect(page.locator('#log li[data-dir="in"][data-type="response.done"]')).to_have_count(1)
    expect(error).to_have_count(1)  # the failed response.done carries the same error: shown once
    page.click("#connect")  # disconnect
    expect(page.locator("#status")).to_have_attribute("data-status", "disconnected")
    expect(page.locator('#transcript .msg[data-role="notice"]').last).to_have_text("Disconnected")
    expect(page.locator("#send")).to_be_disabled()


def test_the_key_goes_in_the_subprotocol_and_stays_in_the_tab():
    _need_browser()
    with relay_process(env={"RELAY_MASTER_KEY": "sk-play"}) as (_, port, _banner), sync_playwright() as pw, \
            tempfile.TemporaryDirectory(prefix="relay-chromium-") as profile:
        context = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                        args=CHROMIUM_ARGS, viewport=LAPTOP)
        b = Browser(context, "key")
        try:
            page = b.page(port)
            sockets = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            help_text = page.locator("#model-help")
            expect(help_text).to_have_attribute("data-state", "error")  # asks for the key, draws no 401
            expect(help_text).to_contain_text("needs an API key")
            # a wrong key: the models are refused, and Connect keeps saying why rather than "choose a model"
            page.fill("#api-key", "sk-wrong")
            page.locator("#api-key").press("Tab")
            expect(help_text).to_have_text("The relay refused this API key.")
            page.click("#connect")
            expect(page.locator("#status")).to_have_attribute("data-status", "disconnected")
            expect(help_text).to_have_text("The relay refused this API key.")
            # the right key typed, then one click on Connect: the models are listed and the page connects
            page.fill("#api-key", "sk-play")
            page.click("#connect")
            expect(page.locator("#status")).to_have_attribute("data-status", "connected")
            expect(help_text).to_have_attribute("data-state", "ok")
            assert page.locator("#model").input_value() == MODEL
            assert page.evaluate("() => sessionStorage.getItem('relay-playground.api-key')") == "sk-play"
            assert sockets and all("sk-play" not in url for url in sockets)
            say(page, "with a key")
            assistant(page, "Echo: with a key")
        finally:
            context.close()
        # the browser itself reports the refused model listing; the page logs nothing
        assert not [p for p in b.problems if "status of 401 (Unauthorized)" not in p], b.problems


def test_the_page_fits_a_phone(relay, browser):
    b = browser()
    page = b.page(relay, PHONE)
    b.screenshot(page, "phone-start")
    connect(page)
    expect(page.locator("#settings-box")).not_to_have_attribute("open", "")  # folded away once connected
    say(page, "hello from a phone")
    assistant(page, "Echo: hello from a phone")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    # the top bar stays one line: name, status (cut short if need be) and the token total side by side
    bar = [page.locator(name).bounding_box() for name in (".topbar h1", "#status", "#totals")]
    middles = [box["y"] + box["height"] / 2 for box in bar]
    assert max(middles) - min(middles) < 4, bar
    assert page.locator(".topbar").bounding_box()["height"] < 56
    for name in ("#text", "#send", "#mic", "#log"):
        box = page.locator(name).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], name
    b.screenshot(page, "phone-conversation")
