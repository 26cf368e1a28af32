"""Test doubles shipped with Engram, for your own tests: no model, no network, deterministic."""

from engram.embedders.fake import FakeEmbedder

__all__ = ["FakeEmbedder"]
