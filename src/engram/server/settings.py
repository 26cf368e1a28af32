"""Server settings: defaults, overridden by ``ENGRAM_SERVER_*`` environment variables or CLI flags."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engram.config import default_home
from engram.errors import ConfigError

ENV_PREFIX = "ENGRAM_SERVER_"


class ServerSettings(BaseModel):
    """Everything ``engram serve`` can be told. Each field reads ``ENGRAM_SERVER_<NAME>``."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="server processes (uvicorn's workers)")
    home: Path | None = Field(None, description="data directory; default $ENGRAM_HOME")
    state_path: Path | None = Field(None, description="server state database; default <home>/server.db")
    state_backend: str = Field(
        default_factory=lambda: "postgres" if os.environ.get("ENGRAM_DATABASE_URL") else "sqlite",
        description="'sqlite', or a name registered in the engram.service_states entry points "
        "(default: 'postgres' when ENGRAM_DATABASE_URL is set)",
    )
    state_config: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of that backend"
    )
    memory_config: dict[str, Any] | None = Field(
        None, description="engram MemoryConfig dict (JSON in ENGRAM_SERVER_MEMORY_CONFIG)"
    )
    rate_limit_per_minute: int = Field(1200, ge=0, description="default per-project limit; 0 disables")
    max_body_bytes: int = Field(2_000_000, ge=1_024)
    worker_tasks: int = Field(
        2,
        ge=0,
        le=64,
        description="job runner loops per server process; 0: only `engram worker` processes run jobs",
    )
    lease_seconds: float = Field(30.0, gt=0)
    poll_interval: float = Field(0.25, gt=0)
    job_max_attempts: int = Field(5, ge=1)
    sync_add_timeout: float = Field(120.0, gt=0)
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_backoff_seconds: float = Field(2.0, gt=0, description="first retry delay; doubles each time")
    webhook_backoff_max: float = Field(600.0, gt=0)
    webhook_timeout: float = Field(10.0, gt=0)
    retention_days: float = Field(
        7.0,
        ge=0,
        description="finished jobs, deliveries and idempotency keys older than this are deleted; 0 keeps all",
    )
    prune_interval: float = Field(
        3600.0, gt=0, description="seconds between two prunings (in each server process)"
    )
    cors_origins: str = Field("", description="comma-separated origins allowed to call from a browser")
    job_delay_ms: int = Field(0, ge=0, description="artificial delay per add job (tests and benchmarks)")

    @classmethod
    def from_env(cls, **overrides: Any) -> ServerSettings:
        """Defaults, then ``ENGRAM_SERVER_*`` variables, then ``overrides`` that are not None."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            if name in ("memory_config", "state_config"):
                try:
                    values[name] = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{ENV_PREFIX}{name.upper()} is not valid JSON: {e}") from e
            else:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def to_env(self) -> dict[str, str]:
        """The environment that recreates these settings in another process (uvicorn's server processes)."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            env[ENV_PREFIX + name.upper()] = json.dumps(value) if isinstance(value, dict) else str(value)
        return env

    def resolved_home(self) -> Path:
        return self.home or default_home()

    def resolved_state_path(self) -> Path:
        return self.state_path or self.resolved_home() / "server.db"
