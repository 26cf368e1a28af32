"""Embedders: the bundled offline default (MiniLM int8 ONNX), OpenAI-compatible APIs, and a fake for tests.

Importing this package is cheap: onnxruntime, tokenizers and the openai SDK are imported on first use.
"""

from engram.embedders.fake import FakeEmbedder
from engram.embedders.minilm import MiniLMEmbedder
from engram.embedders.openai import OpenAIEmbedder

__all__ = ["FakeEmbedder", "MiniLMEmbedder", "OpenAIEmbedder"]
