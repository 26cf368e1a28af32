"""One registry from backend names to classes, fed by entry points (built-ins included).

Groups: ``engram.stores``, ``engram.embedders``, ``engram.llms``, ``engram.rerankers``,
``engram.service_states`` (the server's state). A third-party
package registers a backend exactly as Engram's own are registered in ``pyproject.toml``;
:func:`register` adds one at run time (handy in tests and notebooks).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from engram.errors import ConfigError

Kind = Literal["store", "embedder", "llm", "reranker", "service_state"]
GROUPS: dict[Kind, str] = {
    "store": "engram.stores",
    "embedder": "engram.embedders",
    "llm": "engram.llms",
    "reranker": "engram.rerankers",
    "service_state": "engram.service_states",
}
_runtime: dict[Kind, dict[str, type]] = {kind: {} for kind in GROUPS}
T = TypeVar("T")


def register(kind: Kind, name: str, cls: type) -> None:
    """Register a backend class under ``name`` for this process."""
    _runtime[kind][name] = cls


def available(kind: Kind) -> list[str]:
    """Every name that resolves for ``kind``."""
    names = {ep.name for ep in entry_points(group=GROUPS[kind])}
    return sorted(names | set(_runtime[kind]))


def resolve(kind: Kind, name: str) -> type:
    """The class registered as ``name``; a ConfigError lists the known names otherwise."""
    if name in _runtime[kind]:
        return _runtime[kind][name]
    for ep in entry_points(group=GROUPS[kind], name=name):
        try:
            return cast(type, ep.load())
        except ImportError as e:
            raise ConfigError(f"The {kind} backend {name!r} could not be imported: {e}") from e
    known = ", ".join(available(kind)) or "none"
    raise ConfigError(f"Unknown {kind} provider {name!r}. Known providers: {known}.", details={"field": kind})


def create(kind: Kind, provider: str, config: dict[str, Any] | BaseModel | None, base: type[T]) -> T:
    """Build the backend ``provider`` of ``kind`` from its settings (validated by its Settings model)."""
    cls = resolve(kind, provider)
    settings_model: type[BaseModel] | None = getattr(cls, "Settings", None)
    if settings_model is None:
        raise ConfigError(f"The {kind} backend {provider!r} declares no Settings model")
    try:
        settings = (
            config
            if isinstance(config, settings_model)
            else settings_model.model_validate(
                config.model_dump() if isinstance(config, BaseModel) else (config or {})
            )
        )
    except PydanticValidationError as e:
        problems = "; ".join(
            f"{kind}.config.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"Invalid settings for {kind} provider {provider!r}: {problems}") from e
    instance = cls(settings)
    if not isinstance(instance, base):
        raise ConfigError(f"The {kind} backend {provider!r} does not implement {base.__name__}")
    return instance
