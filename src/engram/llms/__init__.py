"""LLM providers: OpenAI-compatible servers, Anthropic, and a scripted double for tests.

Provider classes register through the ``engram.llms`` entry points; importing this package does not
import any SDK.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engram.interfaces import LLM

__all__ = ["llm_from_environment"]


def llm_from_environment() -> LLM | None:
    """An LLM built from the environment: OPENAI_API_KEY (with OPENAI_BASE_URL, ENGRAM_LLM_MODEL), else
    ANTHROPIC_API_KEY; ``None`` when neither is set. Nothing is contacted here.
    """
    model = os.environ.get("ENGRAM_LLM_MODEL") or None
    if os.environ.get("OPENAI_API_KEY"):
        from engram.llms.openai import OpenAILLM, OpenAISettings

        return OpenAILLM(OpenAISettings(model=model) if model else OpenAISettings())
    if os.environ.get("ANTHROPIC_API_KEY"):
        from engram.llms.anthropic import AnthropicLLM, AnthropicSettings

        return AnthropicLLM(AnthropicSettings(model=model) if model else AnthropicSettings())
    return None
