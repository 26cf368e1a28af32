"""Rerankers Engram ships: the LLM listwise reranker that ``search(rerank=True)`` uses when no
reranker is configured but an LLM is. Plugins register under the ``engram.rerankers`` entry points."""
