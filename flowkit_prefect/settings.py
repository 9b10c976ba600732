"""Process-wide settings, read like the rest of Prefect's: environment variables
``PREFECT_INTEGRATIONS_FLOWKIT_<NAME>`` (or the short ``FLOWKIT_<NAME>``), a ``.env`` file,
``prefect.toml`` (``[integrations.flowkit]``) or ``pyproject.toml``
(``[tool.prefect.integrations.flowkit]``).

Per-run configuration lives in blocks and flow parameters; only what a whole process shares
(where model files are cached, the local stack's port and folders) lives here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect.settings.base import PrefectBaseSettings, build_settings_config
from pydantic import AliasChoices, AliasPath, Field


def _env(name: str) -> AliasChoices:
    """Accept ``PREFECT_INTEGRATIONS_FLOWKIT_<NAME>`` and the short ``FLOWKIT_<NAME>``."""
    return AliasChoices(AliasPath(name), f"prefect_integrations_flowkit_{name}", f"flowkit_{name}")


class FlowkitSettings(PrefectBaseSettings):
    """flowkit-prefect's process-wide knobs; ``get_settings()`` returns the current values."""

    model_config = build_settings_config(("integrations", "flowkit"))

    cache_dir: Path | None = Field(
        default=None,
        validation_alias=_env("cache_dir"),
        description=(
            "Where offline model folders are assembled (symlinks to the packaged files). "
            "Empty: $XDG_CACHE_HOME/flowkit-prefect, else ~/.cache/flowkit-prefect."
        ),
    )
    port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        validation_alias=_env("port"),
        description="Port of the local Prefect server that `make run` / `flowkit up` start.",
    )
    database: Literal["sqlite", "postgres"] = Field(
        default="sqlite",
        validation_alias=_env("database"),
        description=(
            "Database of the local Prefect server `make run` / `flowkit up` start: 'sqlite' "
            "(Prefect's default) or 'postgres' (a local cluster under .flowkit/postgres/)."
        ),
    )
    postgres_port: int = Field(
        default=5433,
        ge=1,
        le=65535,
        validation_alias=_env("postgres_port"),
        description="Loopback port of the local PostgreSQL cluster (when database is postgres).",
    )
    project_dir: Path | None = Field(
        default=None,
        validation_alias=_env("project_dir"),
        description=(
            "The project folder deployments start in (prefect.yaml's pull step reads "
            "$FLOWKIT_PROJECT_DIR). Empty: the current folder."
        ),
    )
    data_dir: Path | None = Field(
        default=None,
        validation_alias=_env("data_dir"),
        description=(
            "Where the default block documents keep data, e.g. the embedded Qdrant folder "
            "(blocks/*.yaml read ${FLOWKIT_DATA_DIR:-./.flowkit/data}). Empty: ./.flowkit/data."
        ),
    )

    dask_address: str | None = Field(
        default=None,
        validation_alias=_env("dask_address"),
        description=(
            "Scheduler address (tcp://host:port) for the Dask deployments. Empty: a local "
            "multi-process cluster per run."
        ),
    )
    dask_workers: int = Field(
        default=2,
        ge=1,
        validation_alias=_env("dask_workers"),
        description="Worker processes of the local Dask cluster (one thread each).",
    )

    def model_cache_dir(self) -> Path:
        """The folder offline model files are assembled in."""
        if self.cache_dir is not None:
            return self.cache_dir.expanduser()
        import os

        xdg = os.environ.get("XDG_CACHE_HOME")
        return (Path(xdg) if xdg else Path.home() / ".cache") / "flowkit-prefect"


def get_settings() -> FlowkitSettings:
    """The settings as the environment says now (cheap: read on every call, never stale)."""
    return FlowkitSettings()
