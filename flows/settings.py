"""One typed settings object for LeadFlow.

Values come from environment variables prefixed ``LEADFLOW_`` (or a ``.env`` file in the
working directory, never committed); secrets are ``SecretStr`` and never logged. Paths default
to the project checkout, so ``make demo`` needs no configuration at all.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration mistake: the message names the setting and how to fix it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LEADFLOW_", env_file=".env", extra="ignore", frozen=True
    )

    project_dir: Path = Field(
        default=PROJECT_ROOT,
        description="Checkout holding dbt_project/, expectations/ and templates/.",
    )
    data_dir: Path | None = Field(
        default=None, description="Where the warehouse, inbox, outbox and task files live."
    )
    mappings_dir: Path | None = Field(
        default=None,
        description="A folder of your own column-mapping profiles (*.yml), tried before the "
        "shipped ones (docs/sources.md).",
    )
    sendgrid_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="SENDGRID_API_KEY",
        description="With no key, email goes to the local outbox.",
    )
    email_from: str = Field(default="LeadFlow Demo <hello@leadflow.example>")
    sender_address: str = Field(
        default="LeadFlow Demo Inc., 1 Example Street, Springfield",
        description="Postal address in every email footer (required by anti-spam law).",
    )
    unsubscribe_url: str = Field(default="https://leadflow.example/unsubscribe?key={message_key}")
    extract_memory_limit: str = Field(
        default="2GB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB memory while loading files; larger files spill to disk.",
    )
    dbt_threads: int = Field(default=2, ge=1, le=64)
    dbt_node_tasks: bool = Field(
        default=False,
        description="Run dbt through prefect-dbt with a Prefect task per node (slower, more "
        "visible in the Prefect UI); see flows/dbt_runner.py.",
    )
    send_max_attempts: int = Field(
        default=3,
        ge=1,
        description="A nurture step whose send failed this many times is no longer tried "
        "(the run reports it as given up).",
    )
    daily_send_limit: int | None = Field(
        default=None,
        ge=0,
        description="At most this many nurture emails per UTC day (none: no limit); the rest "
        "stay due for the next day.",
    )

    @field_validator("project_dir")
    @classmethod
    def _project_has_assets(cls, value: Path) -> Path:
        missing = [
            name
            for name in ("dbt_project", "expectations", "templates")
            if not (value / name).is_dir()
        ]
        if missing:
            raise ValueError(
                f"{value} has no {', '.join(missing)} folder; point LEADFLOW_PROJECT_DIR "
                "at a LeadFlow checkout"
            )
        return value.resolve()

    @cached_property
    def data_root(self) -> Path:
        return (self.data_dir or self.project_dir / "data").resolve()

    @property
    def inbox_dir(self) -> Path:
        return self.data_root / "inbox"

    @property
    def landing_dir(self) -> Path:
        return self.data_root / "landing"

    @property
    def drop_folders(self) -> list[Path]:
        """Folders the extract reads: the inbox and the landing folder."""
        return [self.inbox_dir, self.landing_dir]

    @property
    def warehouse_path(self) -> Path:
        return self.data_root / "warehouse.duckdb"

    @property
    def outbox_dir(self) -> Path:
        return self.data_root / "outbox"

    @property
    def tasks_dir(self) -> Path:
        return self.data_root / "tasks"

    @property
    def dbt_project_dir(self) -> Path:
        return self.project_dir / "dbt_project"

    @property
    def dbt_target_dir(self) -> Path:
        return self.data_root / "dbt" / "target"

    @property
    def dbt_state_dir(self) -> Path:
        """The artifacts of the last successful build, which a run compares with."""
        return self.data_root / "dbt" / "last-build"

    @property
    def expectations_dir(self) -> Path:
        return self.project_dir / "expectations"

    @property
    def templates_dir(self) -> Path:
        return self.project_dir / "templates"

    @property
    def mapping_folders(self) -> list[Path]:
        """Where mapping profiles are looked up: your own first, then the shipped ones."""
        shipped = Path(__file__).parent / "sources" / "profiles"
        return [*([self.mappings_dir] if self.mappings_dir else []), shipped]

    def ensure_dirs(self) -> None:
        for path in (self.inbox_dir, self.landing_dir, self.outbox_dir, self.tasks_dir):
            path.mkdir(parents=True, exist_ok=True)


def load_settings() -> Settings:
    """Build the settings, turning a validation error into a ConfigError that says the fix."""
    try:
        return Settings()
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            key = ".".join(str(part) for part in issue["loc"]) or "settings"
            env_name = (
                key.upper() if key.upper() == "SENDGRID_API_KEY" else f"LEADFLOW_{key.upper()}"
            )
            problems.append(f"{env_name}: {issue['msg']}")
        source = "the environment" + (" and .env" if Path(".env").exists() else "")
        raise ConfigError(
            f"Invalid LeadFlow configuration in {source}: " + "; ".join(problems)
        ) from None


def apply_prefect_defaults(settings: Settings) -> None:
    """Keep Prefect's state inside the project's data folder unless the operator chose otherwise."""
    os.environ.setdefault("PREFECT_HOME", str(settings.data_root / "prefect"))
