from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.config import Config, ConfigError, ModelEntry, default_config, load_config
from relay.models import caps_for

VERTEX_ENTRY = """\
model_list:
  - model_name: vertex_gemini_live_text
    litellm_params:
      model: vertex_ai/gemini-2.0-flash-live-preview-04-09
      vertex_project: my-project
      vertex_location: europe-west4
    model_info:
      mode: realtime
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[Config, list[str]]:
    return load_config(write(tmp_path, text), env=env or {})


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return str(info.value)


def one_model(params: str, extra: str = "") -> str:
    return f"model_list:\n  - model_name: m\n    litellm_params:\n{textwrap.indent(params, '      ')}{extra}"


# --- good configs ---------------------------------------------------------------------------------


def test_vertex_config(tmp_path: Path) -> None:
    config, warnings = load(tmp_path, VERTEX_ENTRY)
    assert warnings == []
    assert config.models == (
        ModelEntry(
            model_name="vertex_gemini_live_text",
            provider="vertex_ai",
            model="gemini-2.0-flash-live-preview-04-09",
            vertex_project="my-project",
            vertex_location="europe-west4",
        ),
    )
    assert config.source.endswith("config.yaml")
    assert config.master_key is None
    assert config.model_names == ["vertex_gemini_live_text"]
    assert config.model("vertex_gemini_live_text") is config.models[0]
    assert config.model("nope") is None


def test_every_field_and_both_providers(tmp_path: Path) -> None:
    sa = tmp_path / "sa.json"
    sa.write_text("{}")
    config, warnings = load(
        tmp_path,
        f"""\
        model_list:
          - model_name: v
            litellm_params:
              model: vertex_ai/gemini-live-2.5-flash
              vertex_project: p-1
              vertex_location: global
              vertex_credentials: {sa}
              api_base: https://proxy.example.com:8443/
              api_version: v1
              upstream_auth: google
          - model_name: g
            litellm_params:
              model: gemini/gemini-2.0-flash-live-001
              api_key: AIzaFromConfig
              api_version: v1alpha
            model_info: {{mode: realtime}}
        general_settings:
          master_key: sk-master
        """,
    )
    assert warnings == []
    v, g = config.models
    assert (v.provider, v.model, v.vertex_project, v.vertex_location) == (
        "vertex_ai",
        "gemini-live-2.5-flash",
        "p-1",
        "global",
    )
    assert v.vertex_credentials == str(sa)
    assert v.api_base == "wss://proxy.example.com:8443"
    assert (v.api_version, v.upstream_auth) == ("v1", "google")
    assert (g.provider, g.model, g.api_key, g.api_version) == (
        "gemini",
        "gemini-2.0-flash-live-001",
        "AIzaFromConfig",
        "v1alpha",
    )
    assert g.vertex_project is None
    assert config.master_key == "sk-master"


def test_defaults(tmp_path: Path) -> None:
    config, _ = load(tmp_path, one_model("model: vertex_ai/m\n"))
    (entry,) = config.models
    assert entry.vertex_location == "us-central1"
    assert entry.vertex_project is None  # ADC's project is looked up at connect time
    assert entry.api_version is None and entry.api_base is None and entry.vertex_credentials is None
    assert entry.upstream_auth == "google"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:9000", "ws://127.0.0.1:9000"),
        ("https://example.com", "wss://example.com"),
        ("ws://localhost:1/", "ws://localhost:1"),
        ("WSS://Example.com/prefix/", "wss://Example.com/prefix"),
    ],
)
def test_api_base_normalized(tmp_path: Path, base: str, expected: str) -> None:
    config, _ = load(tmp_path, one_model(f"model: gemini/m\napi_key: k\napi_base: {base}\n"))
    assert config.models[0].api_base == expected


def test_inline_and_mapping_credentials(tmp_path: Path) -> None:
    inline = json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nX\n"})
    config, _ = load(tmp_path, one_model(f"model: vertex_ai/m\nvertex_credentials: '{inline}'\n"))
    assert json.loads(config.models[0].vertex_credentials or "") == json.loads(inline)
    assert "PRIVATE KEY" not in repr(config)
    config, _ = load(tmp_path, one_model("model: vertex_ai/m\nvertex_credentials: {type: service_account}\n"))
    assert json.loads(config.models[0].vertex_credentials or "") == {"type": "service_account"}


def test_gemini_without_key_when_auth_none(tmp_path: Path) -> None:
    config, _ = load(tmp_path, one_model("model: gemini/m\nupstream_auth: none\n"))
    assert config.models[0].api_key is None
    assert config.models[0].upstream_auth == "none"


# --- unknown keys and other modes -------------------------------------------------------------------


def test_unknown_keys_are_warnings(tmp_path: Path) -> None:
    config, warnings = load(
        tmp_path,
        """\
        model_list:
          - model_name: live
            litellm_params:
              model: vertex_ai/m
              rpm: 10
              timeout: 30
            model_info:
              mode: realtime
              base_model: gemini-2.0
            tpm: 5
        litellm_settings: {drop_params: true}
        router_settings: {routing_strategy: simple-shuffle}
        general_settings:
          master_key: sk-1
          database_url: postgres://u:hunter2@db/x
        """,
    )
    assert config.model_names == ["live"]
    path = str(tmp_path / "config.yaml")
    assert sorted(warnings) == sorted(
        [
            f"{path}: litellm_settings: not used by the relay, ignored",
            f"{path}: router_settings: not used by the relay, ignored",
            f"{path}: general_settings: database_url: LiteLLM proxy settings not used by the relay, ignored",
            f"{path}: model_list[0] (live): litellm_params.rpm: not used by the relay, ignored",
            f"{path}: model_list[0] (live): litellm_params.timeout: not used by the relay, ignored",
            f"{path}: model_list[0] (live): model_info.base_model: not used by the relay, ignored",
            f"{path}: model_list[0] (live): tpm: not used by the relay, ignored",
        ]
    )
    assert not any("hunter2" in w for w in warnings)


def test_litellm_general_settings_are_listed_once_as_ignored(tmp_path: Path) -> None:
    _, warnings = load(tmp_path, VERTEX_ENTRY + textwrap.dedent("""\
        general_settings:
          master_key: sk-1
          database_url: os.environ/DATABASE_URL
          store_model_in_db: true
          alerting: [slack]
          proxy_batch_write_at: 60
          disable_spend_logs: true
          max_parallel_requests: 10
          global_max_parallel_requests: 100
          background_health_checks: true
          health_check_interval: 300
          allowed_routes: [llm_api_routes]
          ui_access_mode: admin_only
          litellm_key_header_name: X-Litellm-Key
          pass_through_endpoints: []
          custom_auth: custom_auth.user_api_key_auth
          otel: true
        """))
    assert len(warnings) == 1, warnings
    assert "general_settings: database_url, store_model_in_db, alerting," in warnings[0]
    assert warnings[0].endswith("custom_auth, otel: LiteLLM proxy settings not used by the relay, ignored")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("master_kye", "general_settings.master_kye: unknown key; did you mean master_key?"),
        ("Master_Key", "general_settings.Master_Key: unknown key; did you mean master_key?"),
        ("transpot", "general_settings.transpot: unknown key; did you mean transport?"),
        ("databse_url", "general_settings.databse_url: unknown key; did you mean database_url?"),
        ("frobnicate", "general_settings.frobnicate: unknown key; the relay's keys are master_key, transport,"),
    ],
)
def test_unknown_general_settings_key_refuses_to_start(tmp_path: Path, key: str, expected: str) -> None:
    # A misspelt master_key used to be a warning, and the relay then ran open to anyone.
    message = error(tmp_path, VERTEX_ENTRY + f"general_settings:\n  {key}: sk-1\n")
    assert expected in message
    assert "sk-1" not in message


def test_non_realtime_entries_are_skipped(tmp_path: Path) -> None:
    config, warnings = load(
        tmp_path,
        """\
        model_list:
          - model_name: gpt-4o
            litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY, rpm: 3}
            model_info: {mode: chat}
          - model_name: live
            litellm_params: {model: gemini/m, api_key: k}
        """,
    )
    assert config.model_names == ["live"]
    assert warnings == [
        f"{tmp_path / 'config.yaml'}: model_list[0] (gpt-4o): model_info.mode is 'chat', not one of realtime, "
        "transcription, translation; entry ignored"
    ]


def test_model_info_mode_states_the_session_kind_and_the_table_gives_it_otherwise(tmp_path: Path) -> None:
    config, _ = load(
        tmp_path,
        """        model_list:
          - model_name: scribe
            litellm_params: {model: gemini/my-speech-model, api_key: k}
            model_info: {mode: transcription}
          - model_name: translate
            litellm_params: {model: gemini/gemini-3.5-live-translate-preview, api_key: k}
          - model_name: live
            litellm_params: {model: gemini/gemini-3.8-live, api_key: k}
        """,
    )
    kinds = {e.model_name: caps_for(e.model, "gemini", e.capabilities).kind for e in config.models}
    assert kinds == {"scribe": "transcription", "translate": "translation", "live": "realtime"}


def test_no_realtime_entry_left(tmp_path: Path) -> None:
    msg = error(tmp_path, one_model("model: openai/gpt-4o\n", "    model_info: {mode: chat}\n"))
    assert "model_list: no realtime model" in msg


def test_vertex_api_key_warns(tmp_path: Path) -> None:
    _, warnings = load(tmp_path, one_model("model: vertex_ai/m\napi_key: sk-topsecret\n"))
    assert len(warnings) == 1
    assert "model_list[0] (m): litellm_params.api_key: ignored" in warnings[0]
    assert "topsecret" not in warnings[0]


# --- errors ---------------------------------------------------------------------------------------

BAD = [
    ("model_list: {a: 1}\n", "model_list: must be a list, got a mapping"),
    ("model_list: []\n", "model_list: is empty"),
    ("general_settings: {}\n", "model_list: required"),
    ("- 1\n", "the top level must be a mapping, got a list"),
    ("model_list:\n  - just-a-string\n", "model_list[0]: must be a mapping, got str"),
    (
        one_model("model: vertex_ai/m\nvertex_location: 5\n"),
        "model_list[0] (m): litellm_params.vertex_location: must be a string, got int",
    ),
    ("model_list:\n  - litellm_params: {model: vertex_ai/m}\n", "model_list[0]: model_name: required"),
    ("model_list:\n  - model_name: m\n", "model_list[0] (m): litellm_params: required"),
    (
        "model_list:\n  - model_name: m\n    litellm_params: [1]\n",
        "model_list[0] (m): litellm_params: must be a mapping, got a list",
    ),
    (one_model("rpm: 1\n"), "model_list[0] (m): litellm_params.model: required"),
    (
        "model_list:\n  - model_name: 5\n    litellm_params: {model: gemini/x}\n",
        "model_list[0]: model_name: must be a string, got int",
    ),
    (
        "model_list:\n  - model_name: ok\n    litellm_params: {model: vertex_ai/m}\n"
        "  - model_name: foo\n    litellm_params: {model: openai/gpt-4o}\n",
        "model_list[1] (foo): litellm_params.model: must start with vertex_ai/ or gemini/, got 'openai/gpt-4o'",
    ),
    (one_model("model: vertex_ai/\n"), "litellm_params.model: must start with vertex_ai/ or gemini/"),
    (one_model("model: gpt-4o\n"), "litellm_params.model: must start with vertex_ai/ or gemini/"),
    (
        "model_list:\n  - model_name: m\n    litellm_params: {model: vertex_ai/a}\n"
        "  - model_name: m\n    litellm_params: {model: vertex_ai/b}\n",
        "model_list[1] (m): model_name: duplicate of model_list[0] (m)",
    ),
    (
        one_model("model: vertex_ai/m\nupstream_auth: basic\n"),
        "model_list[0] (m): litellm_params.upstream_auth: must be 'google' or 'none', got 'basic'",
    ),
    (one_model("model: vertex_ai/m\napi_base: ftp://x\n"), "litellm_params.api_base: must start with ws://"),
    (one_model("model: vertex_ai/m\napi_base: localhost:80\n"), "litellm_params.api_base: must start"),
    (one_model("model: vertex_ai/m\napi_base: 'http://'\n"), "litellm_params.api_base: has no host"),
    (one_model("model: vertex_ai/m\napi_base: 'http://h:port'\n"), "litellm_params.api_base: is not a valid"),
    (one_model("model: vertex_ai/m\napi_base: 'http://h/?key=1'\n"), "api_base: must not contain a query"),
    (one_model("model: vertex_ai/m\napi_version: '1/../x'\n"), "litellm_params.api_version: must look like"),
    (one_model("model: vertex_ai/m\nvertex_location: us central\n"), "litellm_params.vertex_location"),
    (one_model("model: vertex_ai/m\nvertex_location: evil.com/x\n"), "litellm_params.vertex_location"),
    (one_model("model: vertex_ai/m\nvertex_project: a/b\n"), "litellm_params.vertex_project: is not a valid"),
    (one_model("model: vertex_ai/m\nvertex_credentials: 5\n"), "litellm_params.vertex_credentials: must be"),
    (
        one_model("model: vertex_ai/m\nvertex_credentials: /nonexistent/sa.json\n"),
        "litellm_params.vertex_credentials: credentials file not found: /nonexistent/sa.json",
    ),
    (
        one_model("model: vertex_ai/m\n", "    model_info: {mode: 7}\n"),
        "model_list[0] (m): model_info.mode: must be a string, got int",
    ),
    (
        one_model("model: vertex_ai/m\n", "    model_info: realtime\n"),
        "model_list[0] (m): model_info: must be a mapping, got str",
    ),
    (
        one_model("model: vertex_ai/m\n") + "general_settings: [sk-1]\n",
        "general_settings: must be a mapping, got a list",
    ),
    (
        one_model("model: vertex_ai/m\n") + "general_settings: {master_key: 12}\n",
        "general_settings.master_key: must be a string, got int",
    ),
    (
        one_model("model: vertex_ai/m\n") + "general_settings: {master_key: ''}\n",
        "general_settings.master_key: must not be empty",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_errors_name_file_entry_and_field(tmp_path: Path, text: str, expected: str) -> None:
    msg = error(tmp_path, text)
    assert msg.startswith(str(tmp_path / "config.yaml") + ": ")
    assert expected in msg


def test_empty_file(tmp_path: Path) -> None:
    assert "the file is empty" in error(tmp_path, "# nothing\n")


def test_every_problem_is_reported(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        """\
        model_list:
          - model_name: a
            litellm_params: {model: openai/x}
          - model_name: b
            litellm_params: {model: vertex_ai/x, vertex_location: 5, api_version: 1}
        """,
    )
    lines = msg.splitlines()
    assert len(lines) == 3
    assert "model_list[0] (a): litellm_params.model" in lines[0]
    assert any("model_list[1] (b): litellm_params.vertex_location" in line for line in lines)
    assert any("model_list[1] (b): litellm_params.api_version" in line for line in lines)


def test_gemini_needs_a_key(tmp_path: Path) -> None:
    msg = error(tmp_path, one_model("model: gemini/gemini-2.0-flash-live-001\n"))
    assert "model_list[0] (m): litellm_params.api_key:" in msg
    assert "GEMINI_API_KEY" in msg and "GOOGLE_API_KEY" in msg


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"^/nonexistent/relay\.yaml: cannot read config file"):
        load_config("/nonexistent/relay.yaml", env={})


def test_yaml_syntax_error_hides_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model_list:\n  - model_name: m\n    litellm_params: {api_key: sk-SECRET: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    msg = str(info.value)
    assert msg.startswith(f"{path}: invalid YAML at line ")
    assert "SECRET" not in msg


def test_invalid_inline_json_hides_contents(tmp_path: Path) -> None:
    msg = error(tmp_path, one_model('model: vertex_ai/m\nvertex_credentials: \'{"private_key": "PRIVATEBITS\'\n'))
    assert "litellm_params.vertex_credentials: inline JSON is not valid (line 1" in msg
    assert "PRIVATEBITS" not in msg


# --- os.environ/ and environment fallbacks ----------------------------------------------------------


def test_os_environ_works_for_every_string(tmp_path: Path) -> None:
    sa = tmp_path / "sa.json"
    sa.write_text("{}")
    env = {
        "NAME": "from-env",
        "MODEL": "vertex_ai/gemini-live",
        "PROJ": "env-proj",
        "LOC": "us-east5",
        "CREDS": str(sa),
        "BASE": "https://127.0.0.1:1234",
        "VER": "v1",
        "AUTH": "none",
        "MK": "sk-env-master",
    }
    config, _ = load(
        tmp_path,
        """\
        model_list:
          - model_name: os.environ/NAME
            litellm_params:
              model: os.environ/MODEL
              vertex_project: os.environ/PROJ
              vertex_location: os.environ/LOC
              vertex_credentials: os.environ/CREDS
              api_base: os.environ/BASE
              api_version: os.environ/VER
              upstream_auth: os.environ/AUTH
            model_info: {mode: realtime}
        general_settings: {master_key: os.environ/MK}
        """,
        env,
    )
    (e,) = config.models
    assert (e.model_name, e.model, e.vertex_project, e.vertex_location) == (
        "from-env",
        "gemini-live",
        "env-proj",
        "us-east5",
    )
    assert (e.vertex_credentials, e.api_base, e.api_version, e.upstream_auth) == (
        str(sa),
        "wss://127.0.0.1:1234",
        "v1",
        "none",
    )
    assert config.master_key == "sk-env-master"
    config, _ = load(tmp_path, one_model("model: gemini/m\napi_key: os.environ/MY_KEY\n"), {"MY_KEY": "AIzaX"})
    assert config.models[0].api_key == "AIzaX"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (one_model("model: gemini/m\napi_key: os.environ/MISSING_VAR\n"), "model_list[0] (m): litellm_params.api_key"),
        (one_model("model: os.environ/MISSING_VAR\n"), "model_list[0] (m): litellm_params.model"),
        (
            "model_list:\n  - model_name: os.environ/MISSING_VAR\n    litellm_params: {model: vertex_ai/m}\n",
            "model_list[0] (os.environ/MISSING_VAR): model_name",
        ),
        (
            one_model("model: vertex_ai/m\nvertex_credentials: os.environ/MISSING_VAR\n"),
            "litellm_params.vertex_credentials",
        ),
        (
            one_model("model: vertex_ai/m\n") + "general_settings: {master_key: os.environ/MISSING_VAR}\n",
            "general_settings.master_key",
        ),
    ],
)
def test_os_environ_unset(tmp_path: Path, text: str, field: str) -> None:
    msg = error(tmp_path, text, {"MISSING_VAR": ""})
    assert f"{field}: environment variable MISSING_VAR (from os.environ/MISSING_VAR) is not set" in msg


def test_os_environ_without_a_name(tmp_path: Path) -> None:
    msg = error(tmp_path, one_model("model: gemini/m\napi_key: os.environ/\n"))
    assert "litellm_params.api_key: os.environ/ must be followed by" in msg


def test_project_and_location_fallbacks(tmp_path: Path) -> None:
    text = one_model("model: vertex_ai/m\n")
    both = {"VERTEXAI_PROJECT": "vp", "GOOGLE_CLOUD_PROJECT": "gp", "VERTEXAI_LOCATION": "asia-east1"}
    (e,) = load(tmp_path, text, both)[0].models
    assert (e.vertex_project, e.vertex_location) == ("vp", "asia-east1")
    (e,) = load(tmp_path, text, {"GOOGLE_CLOUD_PROJECT": "gp"})[0].models
    assert (e.vertex_project, e.vertex_location) == ("gp", "us-central1")
    explicit = one_model("model: vertex_ai/m\nvertex_project: cfg\nvertex_location: us\n")
    (e,) = load(tmp_path, explicit, both)[0].models
    assert (e.vertex_project, e.vertex_location) == ("cfg", "us")
    # The Vertex project variables mean nothing to an AI Studio model.
    (e,) = load(tmp_path, one_model("model: gemini/m\napi_key: k\n"), both)[0].models
    assert e.vertex_project is None


def test_gemini_key_fallbacks(tmp_path: Path) -> None:
    text = one_model("model: gemini/m\n")
    env = {"GEMINI_API_KEY": "gk", "GOOGLE_API_KEY": "ok"}
    assert load(tmp_path, text, env)[0].models[0].api_key == "gk"
    assert load(tmp_path, text, {"GOOGLE_API_KEY": "ok"})[0].models[0].api_key == "ok"
    assert load(tmp_path, one_model("model: gemini/m\napi_key: cfg\n"), env)[0].models[0].api_key == "cfg"
    # Vertex models don't pick up AI Studio keys.
    assert load(tmp_path, one_model("model: vertex_ai/m\n"), env)[0].models[0].api_key is None


def test_master_key_fallback(tmp_path: Path) -> None:
    text = one_model("model: vertex_ai/m\n")
    assert load(tmp_path, text, {"RELAY_MASTER_KEY": "sk-env"})[0].master_key == "sk-env"
    assert load(tmp_path, text, {"RELAY_MASTER_KEY": ""})[0].master_key is None
    with_key = text + "general_settings: {master_key: sk-cfg}\n"
    assert load(tmp_path, with_key, {"RELAY_MASTER_KEY": "sk-env"})[0].master_key == "sk-cfg"


def test_transport_setting(tmp_path: Path) -> None:
    text = one_model("model: vertex_ai/m\n")
    assert load(tmp_path, text)[0].transport == "trio-websocket"
    assert load(tmp_path, text + "general_settings: {master_key: sk-1}\n")[0].transport == "trio-websocket"
    chosen = load(tmp_path, text + "general_settings: {transport: websockets, master_key: sk-1}\n")[0]
    assert (chosen.transport, chosen.master_key) == ("websockets", "sk-1")
    from_env = text + "general_settings: {transport: os.environ/RELAY_T}\n"
    assert load(tmp_path, from_env, {"RELAY_T": "trio-websocket"})[0].transport == "trio-websocket"
    assert default_config("http://127.0.0.1:1").transport == "trio-websocket"
    path = write(tmp_path, text + "general_settings: {transport: wsproto}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        f"{path}: general_settings.transport: must be 'trio-websocket' or 'websockets', got 'wsproto'"
    )
    assert error(tmp_path, text + "general_settings: {transport: 3}\n").endswith(
        "general_settings.transport: must be a string, got int"
    )
    # Reported together with the other settings' problems.
    both = error(tmp_path, text + "general_settings: {transport: x, master_key: ''}\n")
    assert "general_settings.master_key: must not be empty" in both and "general_settings.transport" in both


# --- secrets ----------------------------------------------------------------------------------------


def test_secrets_never_in_messages_or_repr(tmp_path: Path) -> None:
    text = (
        "model_list:\n"
        "  - model_name: g\n    litellm_params: {model: gemini/m, api_key: AIzaConfigSecret}\n"
        "  - model_name: e\n    litellm_params: {model: gemini/m, api_key: os.environ/KEY}\n"
        "  - model_name: bad\n    litellm_params: {model: openai/x, api_key: sk-BadEntrySecret}\n"
        "general_settings: {master_key: sk-MasterSecret, alerting_threshold: 1}\n"
    )
    env = {"KEY": "EnvValueSecret"}
    msg = error(tmp_path, text, env)
    good = text.replace("openai/x", "gemini/x")
    config, warnings = load(tmp_path, good, env)
    for secret in ("AIzaConfigSecret", "EnvValueSecret", "BadEntrySecret", "MasterSecret"):
        assert secret not in msg
        assert secret not in repr(config)
        assert all(secret not in w for w in warnings)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(secret=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40))
def test_env_secret_values_never_leak(tmp_path: Path, secret: str) -> None:
    text = one_model("model: os.environ/M\napi_key: os.environ/K\nupstream_auth: os.environ/A\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, {"M": "gemini/m", "K": secret, "A": "bogus"})
    assert secret not in str(info.value)


# --- the embedded default ---------------------------------------------------------------------------


def test_default_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_MASTER_KEY", raising=False)
    config = default_config("ws://127.0.0.1:5555")
    assert config.master_key is None
    assert config.source == "<embedded default>"
    assert config.models == tuple(
        ModelEntry(
            model_name=name,
            provider="vertex_ai",
            model=model,
            vertex_project="relay-emulator",
            api_base="ws://127.0.0.1:5555",
            upstream_auth="none",
        ) for name, model in (("vertex_gemini_live_text", "gemini-2.0-flash-live-preview-04-09"),
                              ("gemini_transcribe", "gemini-3.5-transcribe-live-preview"),
                              ("gemini_translate", "gemini-3.5-live-translate-preview"))
    )
    assert [m.caps().kind for m in config.models] == ["realtime", "transcription", "translation"]
    monkeypatch.setenv("RELAY_MASTER_KEY", "sk-x")
    assert default_config("http://127.0.0.1:1").master_key == "sk-x"
    assert default_config("http://127.0.0.1:1").models[0].api_base == "ws://127.0.0.1:1"
    with pytest.raises(ConfigError):
        default_config("ftp://nope")


def test_function_response_id_flag(tmp_path: Path) -> None:
    assert "function_response_id" not in load(tmp_path, one_model("model: vertex_ai/m\n"))[0].models[0].capabilities
    on = load(tmp_path, one_model("model: vertex_ai/m\nfunction_response_id: true\n"))[0]
    assert on.models[0].capabilities["function_response_id"] is True
    assert "function_response_id" in error(
        tmp_path, one_model("model: vertex_ai/m\nfunction_response_id: sometimes\n"))


def test_response_timeout_setting(tmp_path: Path) -> None:
    text = one_model("model: vertex_ai/m\n")
    assert load(tmp_path, text)[0].response_timeout == 60.0
    assert default_config("http://127.0.0.1:1").response_timeout == 60.0
    assert load(tmp_path, text + "general_settings: {response_timeout: 5}\n")[0].response_timeout == 5.0
    assert load(tmp_path, text + "general_settings: {response_timeout: 0.25}\n")[0].response_timeout == 0.25
    for bad in ("0", "-1", "'60'", "true", ".inf"):
        assert error(tmp_path, text + f"general_settings: {{response_timeout: {bad}}}\n").endswith(
            "general_settings.response_timeout: must be a positive number of seconds, got "
            + {"0": "0", "-1": "-1", "'60'": "'60'", "true": "True", ".inf": "inf"}[bad]
        )


def test_session_bounds_settings(tmp_path: Path) -> None:
    text = one_model("model: vertex_ai/m\n")
    config = load(tmp_path, text)[0]
    assert (config.client_send_buffer, config.resume_buffer_seconds, config.upstream_ping_timeout) == (
        512 * 1024, 30.0, 60.0)
    settings = "general_settings: {client_send_buffer: 65536, resume_buffer_seconds: 5, upstream_ping_timeout: 0}\n"
    config = load(tmp_path, text + settings)[0]
    assert (config.client_send_buffer, config.resume_buffer_seconds, config.upstream_ping_timeout) == (
        65536, 5.0, 0.0)
    for bad, shown in (("1024", "1024"), ("65536.5", "65536.5"), ("'1MiB'", "'1MiB'"), ("true", "True")):
        assert error(tmp_path, text + f"general_settings: {{client_send_buffer: {bad}}}\n").endswith(
            f"general_settings.client_send_buffer: must be a whole number of bytes, at least 4096, got {shown}")
    assert error(tmp_path, text + "general_settings: {resume_buffer_seconds: 0}\n").endswith(
        "general_settings.resume_buffer_seconds: must be a positive number of seconds, got 0")
    assert error(tmp_path, text + "general_settings: {upstream_ping_timeout: -1}\n").endswith(
        "general_settings.upstream_ping_timeout: must be a number of seconds (0 = off), got -1")


def test_capabilities_override_the_model_table_and_bad_ones_name_their_field(tmp_path: Path) -> None:
    from relay.models import caps_for

    text = one_model("model: gemini/gemini-3.8-live\napi_key: k\ncapabilities: {text_output: true, thinking: budget}\n")
    entry = load(tmp_path, text)[0].models[0]
    caps = caps_for(entry.model, "gemini", entry.capabilities)
    assert (caps.text_output, caps.thinking, caps.context_update) == (True, "budget", True)
    assert "litellm_params.capabilities.thinking" in error(
        tmp_path, one_model("model: gemini/gemini-3.8-live\napi_key: k\ncapabilities: {thinking: lots}\n"))
    assert "litellm_params.capabilities.text_output" in error(
        tmp_path, one_model("model: gemini/gemini-3.8-live\napi_key: k\ncapabilities: {text_output: maybe}\n"))
    unknown = error(tmp_path, one_model("model: gemini/gemini-3.8-live\napi_key: k\ncapabilities: {voices: 3}\n"))
    assert "litellm_params.capabilities.voices" in unknown and "text_output" in unknown
    assert "litellm_params.capabilities" in error(
        tmp_path, one_model("model: gemini/gemini-3.8-live\napi_key: k\ncapabilities: [text_output]\n"))


def test_gemini_features_are_checked_against_the_model(tmp_path: Path) -> None:
    native = "model: gemini/gemini-live-2.5-flash-native-audio\napi_key: k\n"
    entry = load(tmp_path, one_model(native + "thinking_budget: 512\naffective_dialog: true\nproactive_audio: true\n"
                                     "media_resolution: low\nlanguage_code: de-DE\n"))[0].models[0]
    assert (entry.options.thinking_budget, entry.options.affective_dialog, entry.options.proactive_audio) == (
        512, True, True)
    live = "model: gemini/gemini-3.8-live\napi_key: k\n"
    assert "litellm_params.proactive_audio" in error(tmp_path, one_model(live + "proactive_audio: false\n"))
    assert "litellm_params.thinking_budget" in error(tmp_path, one_model(live + "thinking_budget: 100\n"))
    assert "litellm_params.affective_dialog" in error(tmp_path, one_model(live + "affective_dialog: true\n"))
    assert "litellm_params.thinking_level" in error(tmp_path, one_model(
        "model: gemini/gemini-3.8-live-extended-thinking\napi_key: k\nthinking_level: minimal\n"))
    assert "litellm_params.thinking_budget" in error(tmp_path, one_model(native + "thinking_budget: lots\n"))
    assert "litellm_params.media_resolution" in error(tmp_path, one_model(native + "media_resolution: huge\n"))
    assert "litellm_params.affective_dialog" in error(tmp_path, one_model(native + "affective_dialog: 'yes'\n"))


def test_drain_timeout_setting(tmp_path: Path) -> None:
    text = one_model("model: vertex_ai/m\n")
    assert load(tmp_path, text)[0].drain_timeout == 30.0
    assert load(tmp_path, text + "general_settings: {drain_timeout: 5}\n")[0].drain_timeout == 5.0
    assert load(tmp_path, text + "general_settings: {drain_timeout: 0}\n")[0].drain_timeout == 0.0
    for bad in ("-1", "'30'", "true"):
        settings = f"general_settings: {{drain_timeout: {bad}}}\n"
        assert "general_settings.drain_timeout" in error(tmp_path, text + settings)


def test_named_client_keys_and_limits(tmp_path: Path) -> None:
    text = one_model("model: vertex_ai/m\n")
    settings = ("general_settings:\n  master_key: sk-m\n  max_sessions: 50\n  max_events_per_second: 0\n"
                "  keys:\n    - {name: alice, key: sk-a, max_sessions: 2}\n    - {name: bob, key: os.environ/BOB}\n")
    config = load(tmp_path, text + settings, env={"BOB": "sk-b"})[0]
    assert [(k.name, k.key, k.max_sessions) for k in config.client_keys()] == [
        ("alice", "sk-a", 2), ("bob", "sk-b", None), ("master", "sk-m", None)]
    assert (config.max_sessions, config.max_events_per_second, config.max_session_seconds) == (50, 0.0, 7200.0)
    assert "sk-b" not in repr(config)
    for bad, field in (("[{name: a}]", "keys[0].key"), ("[{key: k}]", "keys[0].name"),
                       ("[{name: a, key: k, max_sessions: 0}]", "keys[0].max_sessions"),
                       ("[{name: a, key: k, colour: red}]", "keys[0]"),
                       ("[{name: a, key: k}, {name: a, key: j}]", "keys[1].name"), ("sk-x", "keys")):
        assert f"general_settings.{field}" in error(tmp_path, text + f"general_settings:\n  keys: {bad}\n"), bad
    assert "general_settings.max_sessions" in error(tmp_path, text + "general_settings: {max_sessions: 0}\n")
    secret = error(tmp_path, text + "general_settings:\n  keys: [{name: a, key: sk-s}, {name: b, key: sk-s}]\n")
    assert "sk-s" not in secret
