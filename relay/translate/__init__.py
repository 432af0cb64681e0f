"""The sans-IO translator between OpenAI Realtime and Gemini Live (no trio, no sockets, no clock)."""

from relay.translate.base import Close, Connect, Output
from relay.translate.translation import LiveTranslation
from relay.translate.translator import Translator

__all__ = ["Close", "Connect", "LiveTranslation", "Output", "Translator"]
