"""The sans-IO translator between OpenAI Realtime and Gemini Live (no trio, no sockets, no clock)."""

from relay.translate.translator import Close, Connect, Output, Translator

__all__ = ["Close", "Connect", "Output", "Translator"]
