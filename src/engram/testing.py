"""Test doubles shipped with Engram, for your own tests: no model, no network, deterministic."""

from engram.embedders.fake import FakeEmbedder
from engram.llms.scripted import ScriptedCall, ScriptedLLM, ScriptExhaustedError

__all__ = ["FakeEmbedder", "ScriptExhaustedError", "ScriptedCall", "ScriptedLLM"]
