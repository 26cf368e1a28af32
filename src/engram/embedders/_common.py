"""Helpers shared by the embedders."""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from engram.types import Vector


def l2_normalize(vectors: np.ndarray) -> Vector:
    """Row-wise L2 normalisation as float32; an all-zero row stays zero instead of becoming NaN."""
    out = np.asarray(vectors, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-d array of vectors, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)


def check_texts(texts: object) -> list[str]:
    """The texts as a list, refusing a bare string (a common mistake that would embed characters)."""
    from engram.errors import ValidationError

    if isinstance(texts, str):
        raise ValidationError("embed() takes a sequence of texts, not a single string", field="texts")
    items: list[str] = list(texts)  # type: ignore[call-overload]
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise ValidationError(f"texts[{i}] is {type(text).__name__}, expected str", field="texts")
    return items


def length_batches(lengths: list[int], max_texts: int, max_tokens: int) -> list[list[int]]:
    """Indices of texts grouped for model runs: shortest first, each group padding to its longest
    text, and at most ``max_texts`` texts or ``max_tokens`` padded tokens (one text always fits).

    One run per group keeps the padding small: a run pads every text to the longest, and attention
    grows with the square of that width, so 50 short texts padded to one long one cost more than
    several runs of similar lengths (measured: 2.4x more per text for 50 chat turns in one run)."""
    groups: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        width = lengths[i]  # sorted ascending: the newest text is the group's widest
        if current and (len(current) >= max_texts or (len(current) + 1) * width > max_tokens):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


S = TypeVar("S", bound=BaseModel)


def build_settings(model: type[S], settings: S | None, overrides: dict[str, Any]) -> S:
    """``settings`` (or the defaults) with keyword ``overrides`` applied and validated."""
    from engram.errors import ConfigError

    if settings is not None and not isinstance(settings, model):
        raise ConfigError(f"expected {model.__qualname__}, got {type(settings).__name__}")
    if not overrides:
        return settings if settings is not None else model()
    data = settings.model_dump() if settings is not None else {}
    data.update(overrides)
    try:
        return model.model_validate(data)
    except PydanticValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(settings)'}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"Invalid {model.__qualname__}: {problems}") from e


class LocalModel:
    """What the in-process model embedders share: the model loads once (on the first embed, or
    :meth:`load`), behind ``_load_lock``; runs are serialised by ``_run_lock`` (each run already uses
    every core); :meth:`aclose` drops it (loaded again on the next embed)."""

    _model: Any = None

    def _init_model(self) -> None:
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._model = None

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (it loads on the first embed)."""
        return self._model is not None

    def load(self) -> None:
        """Verify and load the model now (otherwise the first embed does it)."""
        self._loaded()

    def _loaded(self) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Drop the model (it is loaded again on the next embed)."""
        with self._load_lock:
            self._model = None
