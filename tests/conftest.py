from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests.schemas import validate_gemini
from tests.stack import TRANSPORTS, Stack

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="module", params=TRANSPORTS)
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    s = Stack(
        tmp_path_factory.mktemp("stack"),
        transport=request.param,
        extra_models=[
            {
                "model_name": "studio_bad_key",
                "litellm_params": {"model": "gemini/gemini-live-2.5-flash-preview", "api_key": "wrong-key",
                                   "api_base": "EMULATOR"},
            },
            {
                "model_name": "unreachable",
                "litellm_params": {"model": "gemini/gemini-live-2.5-flash-preview", "api_key": "k",
                                   "api_base": "ws://127.0.0.1:9"},
            },
        ],
    ).start()
    yield s
    s.stop()
    # Every message the relay sent upstream during the module is a valid Gemini Live client message.
    for message in s.upstream_messages():
        validate_gemini(message)
