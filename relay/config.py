"""The relay's configuration: a LiteLLM proxy `config.yaml`, read as LiteLLM would read it.

Only the keys the relay needs are interpreted; everything else LiteLLM knows about is left alone with a
warning, so one file can serve both.  Messages name the file, the model_list entry and the field, and
never contain secret values (keys, inline credentials, environment variable values).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs
import cattrs
import yaml

from relay.models import SESSION_KINDS, Backend, GeminiOptions, ModelCaps, caps_for, with_overrides
from relay.transport import DEFAULT_TRANSPORT, TRANSPORT_NAMES, TransportName

ENV_PREFIX = "os.environ/"
DEFAULT_LOCATION = "us-central1"
_PROVIDERS = ("vertex_ai", "gemini")
_GEMINI_KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_PROJECT_VARS = ("VERTEXAI_PROJECT", "GOOGLE_CLOUD_PROJECT")
# Location and project end up in a host name and a resource path; refuse anything that could reshape them.
_LOCATION_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9._:-]+$")
_VERSION_RE = re.compile(r"^v[0-9]+[a-z0-9]*$")


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


@attrs.frozen
class ModelEntry:
    model_name: str
    provider: Literal["vertex_ai", "gemini"]
    model: str
    vertex_project: str | None = None
    vertex_location: str = DEFAULT_LOCATION
    # Inline JSON holds a private key, so neither it nor the key is shown by repr().
    vertex_credentials: str | None = attrs.field(default=None, repr=False)
    api_base: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    api_version: str | None = None
    upstream_auth: Literal["google", "none"] = "google"
    # Overrides of the model table's row (relay.models.ModelCaps fields), already checked; `function_response_id`
    # and `context_update` set directly in litellm_params land here too.
    capabilities: dict[str, Any] = attrs.field(factory=dict)
    # Gemini features the operator turned on for this model (thinking, affective dialog, proactive audio, ...).
    options: GeminiOptions = attrs.field(factory=GeminiOptions)
    # Gemini's contextWindowCompression: {trigger_tokens, target_tokens} (either optional), False (never), or
    # None (on for sessions with audio).
    context_window_compression: dict[str, int] | bool | None = None

    @property
    def backend(self) -> Backend:
        return "vertex" if self.provider == "vertex_ai" else "gemini"

    def caps(self) -> ModelCaps:
        """The model's row of the capability table, with this entry's overrides."""
        return caps_for(self.model, self.backend, self.capabilities)


@attrs.frozen
class ClientKey:
    """A key clients present (`general_settings.keys`), named so that usage is attributed in metrics and logs."""

    name: str
    key: str = attrs.field(repr=False)
    max_sessions: int | None = None  # concurrent sessions on this key; None: only the global limit


@attrs.frozen
class Config:
    models: tuple[ModelEntry, ...]
    master_key: str | None = attrs.field(default=None, repr=False)
    source: str = "<embedded default>"
    # The WebSocket implementation for both the client-facing server and the upstream connections.
    transport: TransportName = DEFAULT_TRANSPORT
    # Seconds Gemini may stay silent while it owes a response before the relay reports it and reconnects.
    response_timeout: float = 60.0
    # Seconds of client audio held while an upstream connection is switched (and resent after it); past it the
    # oldest audio is dropped with a warning and a count.
    resume_buffer_seconds: float = 30.0
    # Seconds the websockets transport waits for Gemini's pong (Gemini has answered pings after 8-30 s); 0 = no pings.
    upstream_ping_timeout: float = 60.0
    # Seconds a client may stay silent before it is pinged, and then before it counts as gone (closed, its session
    # and Gemini connection ended); 0 = never.  Catches clients that vanished without closing (no FIN).
    client_keepalive_seconds: float = 20.0
    # Bytes of server events a client may leave unread (about 8 s of 24 kHz audio deltas); past it the client is
    # closed with 1008, so a client that stopped reading cannot make the relay hold its output without limit.
    client_send_buffer: int = 512 * 1024
    # Seconds a SIGTERM/SIGINT drain gives open sessions to finish their response in flight (then 1001).
    drain_timeout: float = 30.0
    # Named client keys (with master_key, if set, as "master"); none at all: the relay is open.
    keys: tuple[ClientKey, ...] = ()
    # Concurrent sessions on the whole relay (Google caps a project at 1,000 sessions of 2.5 native audio).
    max_sessions: int = 1000
    # Client events a session may send per second (20 ms audio is 50/s); 0 = no limit.
    max_events_per_second: float = 500.0
    # Seconds a session may last; 0 = no limit.
    max_session_seconds: float = 7200.0
    # Serve the browser playground (relay.playground) at / on the relay's port.
    playground: bool = True

    def client_keys(self) -> tuple[ClientKey, ...]:
        """Every key a client may present: the named keys, and master_key as "master"."""
        if self.master_key and not any(k.key == self.master_key for k in self.keys):
            return (*self.keys, ClientKey("master", self.master_key))
        return self.keys

    def model(self, name: str) -> ModelEntry | None:
        return next((entry for entry in self.models if entry.model_name == name), None)

    @property
    def model_names(self) -> list[str]:
        return [entry.model_name for entry in self.models]


# --- the YAML shape, structured by cattrs -------------------------------------------------------------


@attrs.define
class _LitellmParams:
    model: str
    vertex_project: str | None = None
    vertex_location: str | None = None
    # LiteLLM accepts a path, an inline JSON string, or (in YAML) a mapping; checked by hand below.
    vertex_credentials: Any = None
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    upstream_auth: str | None = None
    function_response_id: bool | None = None
    context_update: bool | None = None
    context_window_compression: Any = None  # a mapping or false; checked by hand
    capabilities: Any = None  # a mapping of relay.models.ModelCaps fields; checked against the table
    # Gemini features (relay.models.GeminiOptions), checked against the model's row.
    thinking_budget: Any = None
    thinking_level: str | None = None
    include_thoughts: Any = None
    affective_dialog: Any = None
    proactive_audio: Any = None
    media_resolution: str | None = None
    language_code: str | None = None


@attrs.define
class _ModelInfo:
    mode: str | None = None


@attrs.define
class _ModelListEntry:
    model_name: str
    litellm_params: _LitellmParams
    model_info: _ModelInfo | None = None


@attrs.define
class _GeneralSettings:
    master_key: str | None = None
    transport: str | None = None
    response_timeout: Any = None  # a positive number; checked by hand (cattrs would take "60" or True)
    resume_buffer_seconds: Any = None
    upstream_ping_timeout: Any = None
    client_keepalive_seconds: Any = None
    client_send_buffer: Any = None
    drain_timeout: Any = None
    keys: Any = None
    max_sessions: Any = None
    max_events_per_second: Any = None
    max_session_seconds: Any = None
    playground: Any = None  # a boolean; checked by hand (cattrs would take "no" or 0)


# general_settings keys of LiteLLM's proxy that the relay has no use for: a LiteLLM config.yaml keeps working, with
# one warning naming them.  Any other key is refused, so that a misspelt `master_key` cannot leave the relay open.
# From the "general_settings - Reference" table of LiteLLM's proxy docs (docs.litellm.ai/docs/proxy/config_settings)
# and the fields of ConfigGeneralSettings in litellm/proxy/_types.py.
LITELLM_GENERAL_SETTINGS = frozenset({
    "admin_only_routes", "alert_to_webhook_url", "alert_types", "alerting", "alerting_args", "alerting_threshold",
    "allow_client_side_credentials", "allow_requests_on_db_unavailable", "allow_user_auth", "allowed_ips",
    "allowed_routes", "background_health_checks", "completion_model", "custom_auth", "custom_key_generate",
    "custom_sso", "database_args", "database_connection_pool_limit", "database_connection_timeout", "database_type",
    "database_url", "default_team_disabled", "disable_adding_master_key_hash_to_db", "disable_master_key_return",
    "disable_prisma_schema_update", "disable_reset_budget", "disable_responses_id_security",
    "disable_retry_on_max_parallel_request_limit_error", "disable_spend_logs", "disable_spend_updates",
    "embedding_model", "enable_jwt_auth", "enable_oauth2_auth", "enable_oauth2_proxy_auth", "enable_public_model_hub",
    "enforce_user_param", "enforced_params", "forward_client_headers_to_llm_api", "forward_openai_org_id",
    "global_max_parallel_requests", "health_check_details", "health_check_interval", "image_generation_model",
    "infer_model_from_keys", "key_management_settings", "key_management_system", "litellm_jwtauth",
    "litellm_key_header_name", "litellm_license", "max_parallel_requests", "max_request_size_mb",
    "max_response_size_mb", "maximum_spend_logs_retention_interval", "maximum_spend_logs_retention_period",
    "moderation_model", "oauth2_config_mappings", "otel", "pass_through_endpoints", "proxy_batch_polling_interval",
    "proxy_batch_write_at", "proxy_budget_rescheduler_max_time", "proxy_budget_rescheduler_min_time", "public_routes",
    "reject_clientside_metadata_tags", "service_account_settings", "spend_report_frequency", "store_model_in_db",
    "store_prompts_in_spend_logs", "supported_db_objects", "ui_access_mode", "use_azure_key_vault",
    "use_client_credentials_pass_through_routes", "use_google_kms", "use_x_forwarded_for", "user_api_key_cache_ttl",
    "user_header_name", "user_mcp_management_mode",
})

# Everything LiteLLM's os.environ/NAME form applies to (credentials may also be a mapping).
_STRING_PARAMS = tuple(
    f.name for f in attrs.fields(_LitellmParams)
    if f.name not in ("vertex_credentials", "function_response_id", "context_update", "context_window_compression",
                      "capabilities", "thinking_budget", "include_thoughts", "affective_dialog", "proactive_audio")
)


class _Problem(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _kind(value: object) -> str:
    return {dict: "a mapping", list: "a list", type(None): "null"}.get(type(value), type(value).__name__)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)

    def strict_str(value: Any, _: type) -> str:
        # cattrs would happily turn 5 into "5"; a number where a name belongs is a mistake worth reporting.
        if isinstance(value, str):
            return value
        raise TypeError(f"must be a string, got {_kind(value)}")

    conv.register_structure_hook(str, strict_str)

    def strict_bool(value: Any, _: type) -> bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"must be true or false, got {_kind(value)}")

    conv.register_structure_hook(bool, strict_bool)

    def mapping_first(cl: type) -> Callable[[Any, type], Any]:
        inner = cattrs.gen.make_dict_structure_fn(cl, conv)

        def structure(value: Any, t: type) -> Any:
            if not isinstance(value, Mapping):
                raise TypeError(f"must be a mapping, got {_kind(value)}")
            return inner(value, t)

        return structure

    conv.register_structure_hook_factory(attrs.has, mapping_first)
    return conv


_converter = _make_converter()


def _flatten(exc: BaseException, path: str) -> list[tuple[str, str]]:
    """cattrs' nested exception groups as (dotted field path, message) pairs."""
    if isinstance(exc, cattrs.ClassValidationError):
        with_notes, without = exc.group_exceptions()
        found = [p for sub, note in with_notes for p in _flatten(sub, f"{path}.{note.name}".lstrip("."))]
        return found + [p for sub in without for p in _flatten(sub, path)]
    return [(path, "required" if isinstance(exc, KeyError) else str(exc))]


def _structure(raw: Any, cls: type, where: str, errors: list[str], warnings: list[str]) -> Any:
    """Structure `raw` as `cls`, reporting every bad field and every unknown key; None if it failed."""
    try:
        value = _converter.structure(raw, cls)
    except Exception as exc:  # cattrs wraps every field's failure
        errors += [f"{where}{field}: {msg}" for field, msg in _flatten(exc, "")]
        return None
    warnings += [f"{where}{key}: not used by the relay, ignored" for key in _unknown_keys(raw, cls, "")]
    return value


def _unknown_keys(raw: Mapping[str, Any], cls: type, path: str) -> list[str]:
    known = {f.name for f in attrs.fields(cls)}
    found: list[str] = []
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in known:
            found.append(where)
        elif isinstance(value, Mapping) and key not in ("vertex_credentials", "context_window_compression",
                                                         "capabilities"):
            sub = {"litellm_params": _LitellmParams, "model_info": _ModelInfo}.get(key)
            if sub is not None:
                found += _unknown_keys(value, sub, where)
    return found


# --- values -------------------------------------------------------------------------------------------


def _resolve(value: str | None, field: str, env: Mapping[str, str]) -> str | None:
    if value is None or not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX) :]
    if not name:
        raise _Problem(field, f"{ENV_PREFIX} must be followed by an environment variable name")
    if not env.get(name):
        raise _Problem(field, f"environment variable {name} (from {ENV_PREFIX}{name}) is not set")
    return env[name]


def normalize_api_base(value: str) -> str:
    """`scheme://host[:port][/prefix]` with http(s) mapped to ws(s); raises ValueError if unusable."""
    try:
        parts = urllib.parse.urlsplit(value.strip())
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss"):
        raise ValueError(f"must start with ws://, wss://, http:// or https://, got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("has no host")
    # Credentials, queries and fragments in a URL end up in logs; keys belong in api_key.
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain user:password@; put the key in api_key")
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query string or fragment")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _compression(value: Any) -> dict[str, int] | bool | None:
    field = "litellm_params.context_window_compression"
    if value is None or isinstance(value, bool):
        return value
    if not isinstance(value, Mapping):
        raise _Problem(field, f"must be a mapping with trigger_tokens / target_tokens, or false; got {_kind(value)}")
    out: dict[str, int] = {}
    for key, number in value.items():
        if key not in ("trigger_tokens", "target_tokens"):
            raise _Problem(f"{field}.{key}", "unknown key; expected trigger_tokens or target_tokens")
        if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
            raise _Problem(f"{field}.{key}", f"must be a positive whole number of tokens, got {number!r}")
        out[key] = number
    if "trigger_tokens" in out and "target_tokens" in out and out["target_tokens"] >= out["trigger_tokens"]:
        raise _Problem(f"{field}.target_tokens", "must be smaller than trigger_tokens")
    return out


def _credentials(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    if not isinstance(value, str):
        raise _Problem(field, f"must be a file path or service-account JSON, got {_kind(value)}")
    text = value.strip()
    if text.startswith("{"):
        try:
            info = json.loads(text)
        except json.JSONDecodeError as exc:
            # The position only: the text itself holds a private key.
            raise _Problem(field, f"inline JSON is not valid (line {exc.lineno}, column {exc.colno})") from None
        if not isinstance(info, dict):
            raise _Problem(field, "inline JSON must be an object")
        return text
    if not text:
        raise _Problem(field, "must not be empty")
    if not os.path.isfile(text):
        raise _Problem(field, f"credentials file not found: {text}")
    return text


def _capabilities(p: _LitellmParams, model: str, provider: str) -> dict[str, Any]:
    """`litellm_params.capabilities`, checked against the model's row (field names and values)."""
    field = "litellm_params.capabilities"
    raw = p.capabilities
    if raw is None:
        raw = {}
    elif not isinstance(raw, Mapping):
        raise _Problem(field, f"must be a mapping of capability names to values, got {_kind(raw)}")
    out = dict(raw)
    for key in ("function_response_id", "context_update"):  # older spellings, beside the mapping
        value = getattr(p, key)
        if value is not None:
            out.setdefault(key, value)
    try:
        with_overrides(caps_for(model, "vertex" if provider == "vertex_ai" else "gemini"), out)
    except ValueError as exc:
        key, _, message = str(exc).partition(": ")
        raise _Problem(f"{field}.{key}", message) from None
    return out


def _options(p: _LitellmParams, res: Mapping[str, str | None], caps: ModelCaps) -> GeminiOptions:
    """The model's Gemini features, each checked for its type and against what the model takes."""
    flags = {}
    for key in ("include_thoughts", "affective_dialog", "proactive_audio"):
        value = getattr(p, key)
        if value is not None and not isinstance(value, bool):
            raise _Problem(f"litellm_params.{key}", f"must be true or false, got {_kind(value)}")
        flags[key] = value
    budget = p.thinking_budget
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise _Problem("litellm_params.thinking_budget", f"must be a whole number of tokens, 0 or more; got {budget!r}")
    options = GeminiOptions(
        thinking_budget=budget, thinking_level=res["thinking_level"], include_thoughts=bool(flags["include_thoughts"]),
        affective_dialog=bool(flags["affective_dialog"]), proactive_audio=flags["proactive_audio"],
        media_resolution=res["media_resolution"], language_code=res["language_code"])
    problems = options.problems(caps)
    if problems:
        field, message = problems[0]
        raise _Problem(f"litellm_params.{field}", message)
    return options


def _build_entry(raw: _ModelListEntry, env: Mapping[str, str], warnings: list[str], label: str) -> ModelEntry:
    p = raw.litellm_params
    name = _resolve(raw.model_name, "model_name", env) or ""
    if not name.strip():
        raise _Problem("model_name", "must not be empty")
    res = {f: _resolve(getattr(p, f), f"litellm_params.{f}", env) for f in _STRING_PARAMS}

    model = res["model"] or ""
    provider, _, upstream_model = model.partition("/")
    if provider not in _PROVIDERS or not upstream_model.strip():
        raise _Problem("litellm_params.model", f"must start with vertex_ai/ or gemini/, got {model!r}")
    if any(c.isspace() for c in upstream_model):
        raise _Problem("litellm_params.model", f"must not contain whitespace, got {model!r}")

    auth = res["upstream_auth"] or "google"
    if auth not in ("google", "none"):
        raise _Problem("litellm_params.upstream_auth", f"must be 'google' or 'none', got {auth!r}")

    location = res["vertex_location"] or env.get("VERTEXAI_LOCATION") or DEFAULT_LOCATION
    if not _LOCATION_RE.match(location):
        raise _Problem("litellm_params.vertex_location", f"must be a location like us-central1, got {location!r}")

    project = res["vertex_project"]
    if project is None and provider == "vertex_ai":
        project = next((env[v] for v in _PROJECT_VARS if env.get(v)), None)
    if project is not None and not _PROJECT_RE.match(project):
        raise _Problem("litellm_params.vertex_project", f"is not a valid project id: {project!r}")

    version = res["api_version"]
    if version is not None and not _VERSION_RE.match(version):
        raise _Problem("litellm_params.api_version", f"must look like v1beta1 or v1, got {version!r}")

    base = res["api_base"]
    if base is not None:
        try:
            base = normalize_api_base(base)
        except ValueError as exc:
            raise _Problem("litellm_params.api_base", str(exc)) from None

    key = res["api_key"]
    if provider == "gemini" and not key:
        key = next((env[v] for v in _GEMINI_KEY_VARS if env.get(v)), None)
        if key is None and auth == "google":
            raise _Problem(
                "litellm_params.api_key",
                "a gemini/ model needs an API key: set litellm_params.api_key "
                f"or the environment variable {' or '.join(_GEMINI_KEY_VARS)}",
            )
    if provider == "vertex_ai" and key:
        warnings.append(f"{label}: litellm_params.api_key: ignored for vertex_ai/ models (OAuth is used)")

    credentials = _credentials(
        _resolve(p.vertex_credentials, "litellm_params.vertex_credentials", env)
        if isinstance(p.vertex_credentials, str)
        else p.vertex_credentials,
        "litellm_params.vertex_credentials",
    )
    compression = _compression(p.context_window_compression)
    capabilities = _capabilities(p, upstream_model, provider)
    options = _options(p, res, caps_for(upstream_model, "vertex" if provider == "vertex_ai" else "gemini",
                                        capabilities))
    return ModelEntry(
        capabilities=capabilities,
        options=options,
        context_window_compression=compression,
        model_name=name,
        provider=provider,  # type: ignore[arg-type]  # checked against _PROVIDERS above
        model=upstream_model,
        vertex_project=project,
        vertex_location=location,
        vertex_credentials=credentials,
        api_base=base,
        api_key=key,
        api_version=version,
        upstream_auth=auth,  # type: ignore[arg-type]  # checked above
    )


# --- loading ------------------------------------------------------------------------------------------


def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{path}: cannot read config file: {reason}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # PyYAML's own message quotes the offending line, which may hold a key; report the position only.
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None


def load_config(path: str, env: Mapping[str, str] = os.environ) -> tuple[Config, list[str]]:
    """Read a LiteLLM-style config file; returns the config and warnings about ignored keys and entries."""
    data = _read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping with a model_list")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping, got {_kind(data)}")
    warnings = [f"{path}: {key}: not used by the relay, ignored" for key in data if key not in _TOP_KEYS]
    errors: list[str] = []

    master_key, transport, response_timeout, numbers = _general_settings(
        data.get("general_settings"), path, env, warnings, errors
    )

    raw_list = data.get("model_list")
    if raw_list is None:
        raise ConfigError(f"{path}: model_list: required")
    if not isinstance(raw_list, list):
        raise ConfigError(f"{path}: model_list: must be a list, got {_kind(raw_list)}")
    if not raw_list:
        raise ConfigError(f"{path}: model_list: is empty; add a vertex_ai/ or gemini/ model")

    models: list[ModelEntry] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(raw_list):
        label = f"model_list[{i}]"
        if isinstance(raw, Mapping) and isinstance(raw.get("model_name"), str):
            label += f" ({raw['model_name']})"
        if not isinstance(raw, Mapping):
            errors.append(f"{path}: {label}: must be a mapping, got {_kind(raw)}")
            continue
        info = raw.get("model_info")
        mode = info.get("mode") if isinstance(info, Mapping) else None
        if isinstance(mode, str) and mode not in SESSION_KINDS:
            # LiteLLM configs mix chat and embedding models in; they are not ours to serve.
            warnings.append(f"{path}: {label}: model_info.mode is {mode!r}, not one of "
                            f"{', '.join(SESSION_KINDS)}; entry ignored")
            continue
        structured = _structure(raw, _ModelListEntry, f"{path}: {label}: ", errors, warnings)
        if structured is None:
            continue
        try:
            entry = _build_entry(structured, env, warnings, f"{path}: {label}")
        except _Problem as p:
            errors.append(f"{path}: {label}: {p.field}: {p.message}")
            continue
        if isinstance(mode, str) and entry.caps().kind != mode:
            entry = attrs.evolve(entry, capabilities={**entry.capabilities, "kind": mode})  # the session kind it serves
        if entry.model_name in seen:
            errors.append(f"{path}: {label}: model_name: duplicate of {seen[entry.model_name]}")
            continue
        seen[entry.model_name] = label
        models.append(entry)

    if errors:
        raise ConfigError("\n".join(errors))
    if not models:
        raise ConfigError(
            f"{path}: model_list: no realtime model (every entry has a model_info.mode other than realtime)"
        )
    config = Config(models=tuple(models), master_key=master_key, source=path, transport=transport,
                    response_timeout=response_timeout, **numbers)
    return config, warnings


_TOP_KEYS = ("model_list", "general_settings")


def _general_settings(
    raw: Any, path: str, env: Mapping[str, str], warnings: list[str], errors: list[str]
) -> tuple[str | None, TransportName, float, dict[str, Any]]:
    """(master_key, transport, response_timeout, other settings) from general_settings; problems go to `errors`."""
    fallback = env.get("RELAY_MASTER_KEY") or None
    default_timeout = attrs.fields(Config).response_timeout.default
    if raw is None:
        return fallback, DEFAULT_TRANSPORT, default_timeout, {}
    if not isinstance(raw, Mapping):
        errors.append(f"{path}: general_settings: must be a mapping, got {_kind(raw)}")
        return None, DEFAULT_TRANSPORT, default_timeout, {}
    raw = _general_settings_keys(raw, path, warnings, errors)
    settings = _structure(raw, _GeneralSettings, f"{path}: general_settings.", errors, warnings)
    if settings is None:
        return None, DEFAULT_TRANSPORT, default_timeout, {}
    numbers: dict[str, Any] = {}
    for name, zero_ok in (("resume_buffer_seconds", False), ("upstream_ping_timeout", True),
                          ("client_keepalive_seconds", True),
                          ("drain_timeout", True), ("max_events_per_second", True), ("max_session_seconds", True)):
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 <= value < math.inf if zero_ok else 0 < value < math.inf
        ):
            kind = "a number of seconds (0 = off)" if zero_ok else "a positive number of seconds"
            errors.append(f"{path}: general_settings.{name}: must be {kind}, got {value!r}")
            continue
        numbers[name] = float(value)
    limit = settings.max_sessions
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            errors.append(f"{path}: general_settings.max_sessions: must be a whole number, at least 1, got {limit!r}")
        else:
            numbers["max_sessions"] = limit
    if settings.keys is not None:
        numbers["keys"] = _client_keys(settings.keys, path, env, errors)
    if settings.playground is not None:
        if isinstance(settings.playground, bool):
            numbers["playground"] = settings.playground
        else:
            errors.append(f"{path}: general_settings.playground: must be true or false, got {settings.playground!r}")
    size = settings.client_send_buffer
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 4096:
            errors.append(f"{path}: general_settings.client_send_buffer: must be a whole number of bytes, "
                          f"at least 4096, got {size!r}")
        else:
            numbers["client_send_buffer"] = size
    timeout = settings.response_timeout
    if timeout is None:
        timeout = default_timeout
    elif isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        errors.append(f"{path}: general_settings.response_timeout: must be a positive number of seconds, "
                      f"got {timeout!r}")
        timeout = default_timeout
    master_key = _master_key(settings, path, env, errors, fallback)
    return master_key, _transport(settings, path, env, errors), float(timeout), numbers


def _general_settings_keys(raw: Mapping[Any, Any], path: str, warnings: list[str], errors: list[str]) -> dict:
    """The relay's own general_settings; LiteLLM's others get one warning, anything else is an error with a
    did-you-mean (a misspelt master_key must not start an open relay)."""
    ours = [f.name for f in attrs.fields(_GeneralSettings)]
    known = [*ours, *sorted(LITELLM_GENERAL_SETTINGS)]
    kept: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in raw.items():
        name = str(key)
        if name in ours:
            kept[name] = value
        elif name in LITELLM_GENERAL_SETTINGS:
            ignored.append(name)
        else:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the relay's keys are {', '.join(ours)}"
            errors.append(f"{path}: general_settings.{name}: unknown key; {hint}")
    if ignored:
        warnings.append(f"{path}: general_settings: {', '.join(ignored)}: LiteLLM proxy settings not used by the "
                        "relay, ignored")
    return kept


def _client_keys(raw: Any, path: str, env: Mapping[str, str], errors: list[str]) -> tuple[ClientKey, ...]:
    """general_settings.keys: a list of {name, key, max_sessions}; key may be os.environ/NAME."""
    where = f"{path}: general_settings.keys"
    if not isinstance(raw, list):
        errors.append(f"{where}: must be a list of {{name, key, max_sessions}}, got {_kind(raw)}")
        return ()
    keys: list[ClientKey] = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            errors.append(f"{at}: must be a mapping with name and key, got {_kind(entry)}")
            continue
        unknown = sorted(set(entry) - {"name", "key", "max_sessions"})
        if unknown:
            errors.append(f"{at}: unknown key {unknown[0]}; expected name, key, max_sessions")
            continue
        name, limit = entry.get("name"), entry.get("max_sessions")
        try:
            key = _resolve(entry.get("key"), "key", env) if isinstance(entry.get("key"), str) else None
        except _Problem as p:
            errors.append(f"{at}.{p.field}: {p.message}")
            continue
        if not isinstance(name, str) or not name.strip():
            errors.append(f"{at}.name: required, a non-empty string")
        elif any(k.name == name for k in keys):
            errors.append(f"{at}.name: duplicate of another key's name {name!r}")
        elif not key or not key.strip():
            errors.append(f"{at}.key: required, a non-empty string (or os.environ/NAME)")
        elif any(k.key == key for k in keys):
            errors.append(f"{at}.key: the same key as another entry")  # never the key itself: it is a secret
        elif limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            errors.append(f"{at}.max_sessions: must be a whole number, at least 1, got {limit!r}")
        else:
            keys.append(ClientKey(name, key, limit))
    return tuple(keys)


def _master_key(
    settings: _GeneralSettings, path: str, env: Mapping[str, str], errors: list[str], fallback: str | None
) -> str | None:
    try:
        key = _resolve(settings.master_key, "master_key", env)
    except _Problem as p:
        errors.append(f"{path}: general_settings.{p.field}: {p.message}")
        return None
    if key is None:
        return fallback
    if not key.strip():
        errors.append(f"{path}: general_settings.master_key: must not be empty (remove it to run without a key)")
        return None
    return key


def _transport(settings: _GeneralSettings, path: str, env: Mapping[str, str], errors: list[str]) -> TransportName:
    try:
        name = _resolve(settings.transport, "transport", env)
    except _Problem as p:
        errors.append(f"{path}: general_settings.{p.field}: {p.message}")
        return DEFAULT_TRANSPORT
    if name is None:
        return DEFAULT_TRANSPORT
    if name not in TRANSPORT_NAMES:
        allowed = " or ".join(repr(n) for n in TRANSPORT_NAMES)
        errors.append(f"{path}: general_settings.transport: must be {allowed}, got {name!r}")
        return DEFAULT_TRANSPORT
    return name  # type: ignore[return-value]  # checked against TRANSPORT_NAMES above


def default_config(emulator_base: str, env: Mapping[str, str] = os.environ) -> Config:
    """The config used without a file: Vertex-shaped models served by a local emulator, no credentials: a
    conversation model (the default of `/v1/realtime`), a transcription model and a translation model."""
    try:
        base = normalize_api_base(emulator_base)
    except ValueError as exc:
        raise ConfigError(f"emulator base URL {emulator_base!r} {exc}") from None
    models = (("vertex_gemini_live_text", "gemini-2.0-flash-live-preview-04-09"),
              ("gemini_transcribe", "gemini-3.5-transcribe-live-preview"),
              ("gemini_translate", "gemini-3.5-live-translate-preview"))
    entries = tuple(ModelEntry(model_name=name, provider="vertex_ai", model=model, vertex_project="relay-emulator",
                               api_base=base, upstream_auth="none") for name, model in models)
    return Config(models=entries, master_key=env.get("RELAY_MASTER_KEY") or None)
