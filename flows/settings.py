"""One typed settings object for LeadFlow.

Values come from environment variables prefixed ``LEADFLOW_`` (or a ``.env`` file in the
working directory, never committed); secrets are ``SecretStr`` and never logged. Paths default
to the project checkout, so ``make demo`` needs no configuration at all.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.crm_links import checked_crm_url_template

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration mistake: the message names the setting and how to fix it."""


class WarehouseUnreachableError(ConfigError):
    """The PostgreSQL warehouse did not answer; the message names the address (no password)."""


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL warehouse by its libpq URL; its repr never shows the password."""

    url: str

    def __repr__(self) -> str:
        return f"PostgresTarget({self.display})"

    def __str__(self) -> str:
        return self.display

    @property
    def display(self) -> str:
        """The URL without its password, for messages and logs."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()


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
    sendgrid_host: str = Field(
        default="https://api.sendgrid.com",
        description="SendGrid's API address: https://api.eu.sendgrid.com for EU subusers, or "
        "a local test double.",
    )
    sendgrid_sandbox: bool = Field(
        default=False,
        description="SendGrid validates every request and delivers nothing (mail_settings."
        "sandbox_mode); the ledger records the sends under provider sendgrid-sandbox.",
    )
    sendgrid_max_wait_seconds: float = Field(
        default=60,
        ge=0,
        description="The longest a batch waits when SendGrid rate-limits (429); asked to wait "
        "longer, the batch fails for this run and is sent on the next.",
    )
    sendgrid_retry_seconds: float = Field(
        default=120,
        ge=0,
        description="How long a batch keeps retrying SendGrid's 5xx answers and lost "
        "connections (exponential backoff with jitter) before it fails for this run.",
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
    run_wait_seconds: float = Field(
        default=600,
        ge=0,
        description="How long a run waits for the run before it to finish (docs/operating.md).",
    )

    sendgrid_webhook_public_key: str | None = Field(
        default=None,
        description="The Event Webhook's verification key (base64 DER, as SendGrid shows it "
        "under Mail Settings > Signed Event Webhook); `leadflow webhook serve` needs it.",
    )
    webhook_tolerance_seconds: int = Field(
        default=600,
        ge=1,
        description="How far a signed event batch's timestamp may be from now (either way).",
    )
    webhook_max_body_bytes: int = Field(
        default=5_000_000, ge=1024, description="Largest event batch the receiver accepts."
    )
    gate_results_days: float = Field(
        default=30,
        gt=0,
        description="How long GX's stored validation results (the Data Docs of `leadflow "
        "docs`) are kept; ops.gate_results keeps every verdict regardless.",
    )
    pending_unknown_after_hours: int = Field(
        default=24,
        ge=1,
        description="A send still pending this long with no provider event is reported.",
    )

    schedule_timezone: str = Field(
        default="UTC",
        description="Time zone of the schedules in prefect.yaml (business hours, nightly "
        "refresh), an IANA name such as Europe/Berlin.",
    )
    notify_webhook_url: SecretStr | None = Field(
        default=None,
        description="Where a failed run or a blocked gate is posted as JSON (it may carry a "
        "token, so it is never logged); unset: no notification.",
    )
    email_provider_slots: int = Field(
        default=10,
        ge=1,
        description="Requests to the email provider allowed at once across all runs (the "
        "Prefect global concurrency limit leadflow-email-provider).",
    )
    email_provider_slot_decay_per_second: float = Field(
        default=10.0,
        gt=0,
        description="How fast the email provider's slots free again: its rate limit in "
        "requests per second.",
    )
    warehouse_url: SecretStr | None = Field(
        default=None,
        description="A PostgreSQL database for the whole warehouse (dbt models and LeadFlow's "
        "own tables), such as postgresql://leadflow:PASSWORD@db.internal:5432/leadflow; "
        "unset: the DuckDB file in the data folder (docs/operations.md).",
    )
    warehouse_writer_timeout_seconds: float = Field(
        default=3600,
        gt=0,
        description="How long a run waits for another run writing the DuckDB warehouse "
        "before it fails.",
    )
    crm_url_template: str | None = Field(
        default=None,
        description="A link to a lead in your CRM, for tasks of leads known only by their "
        "source record id: https://crm.example/leads/{source_lead_id} ({source} also works); "
        "a source whose leads profile sets crm_url_template links with that one instead.",
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

    # Delivery of sales tasks (docs/sales.md): the warehouse table and a CSV per rep always;
    # a signed webhook when its URL is set; a daily digest email per rep.
    task_webhook_url: SecretStr | None = Field(
        default=None,
        description="Where every new or ended sales task is POSTed as signed JSON (a CRM's "
        "or integration platform's inbound hook; it may carry a token, so it is never "
        "logged); unset: no webhook sink.",
    )
    task_webhook_secret: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="The shared secret of the task webhook's HMAC-SHA256 signature, at least "
        "32 characters; required with LEADFLOW_TASK_WEBHOOK_URL.",
    )
    task_webhook_max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Attempts per task and run (backoff between them, honouring "
        "Retry-After); a task not delivered stays pending and is posted on the next run.",
    )
    task_webhook_max_wait_seconds: float = Field(
        default=60,
        ge=0,
        description="The longest Retry-After the task webhook waits for; asked to wait "
        "longer, the run stops posting and the rest go on the next run.",
    )
    digest_enabled: bool = Field(
        default=True,
        description="Send each rep a daily digest of their open tasks (`leadflow digest`, "
        "the reps-daily-digest deployment) through the email provider.",
    )
    digest_unsubscribe_group: int | None = Field(
        default=None,
        ge=1,
        description="SendGrid unsubscribe group of the reps' digest (SendGrid requires one "
        "per email); not needed with the local outbox.",
    )
    sales_callback_secret: SecretStr | None = Field(
        default=None,
        description="The secret shared with your CRM for signing sales outcomes posted to "
        "`leadflow webhook serve` at POST /sales/outcomes (HMAC-SHA256); unset: no such route.",
    )

    @field_validator("schedule_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return value

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

    @field_validator("crm_url_template")
    @classmethod
    def _crm_link_names_the_record(cls, value: str | None) -> str | None:
        return None if value is None else checked_crm_url_template(value)

    @field_validator("warehouse_url")
    @classmethod
    def _warehouse_is_postgres(cls, value: SecretStr | None) -> SecretStr | None:
        # The address is not echoed: it may carry a password.
        if value is not None and not re.match(r"postgres(ql)?://", value.get_secret_value()):
            raise ValueError(
                "not a PostgreSQL address; give a libpq URL such as "
                "postgresql://leadflow:PASSWORD@db.internal:5432/leadflow, or unset it for "
                "the DuckDB file in the data folder"
            )
        return value

    @field_validator("task_webhook_url")
    @classmethod
    def _webhook_is_http(cls, value: SecretStr | None) -> SecretStr | None:
        # The address is not echoed: it may carry a token.
        if value is not None and not re.fullmatch(r"https?://\S+", value.get_secret_value()):
            raise ValueError(
                "not an http(s) address; give the receiver's full URL, such as "
                "https://crm.example/hooks/leadflow-tasks"
            )
        return value

    @field_validator("task_webhook_secret")
    @classmethod
    def _webhook_is_signed(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if info.data.get("task_webhook_url") is None:
            return value
        if value is None or len(value.get_secret_value()) < 32:
            raise ValueError(
                "a task webhook signs every request: set LEADFLOW_TASK_WEBHOOK_SECRET to a "
                "random string of at least 32 characters (e.g. `openssl rand -hex 32`) and "
                "give the receiver the same one"
            )
        return value

    @field_validator("sendgrid_host")
    @classmethod
    def _host_is_a_base_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/?#]+/?", value):
            raise ValueError(
                f"{value!r} is not an API base address such as https://api.sendgrid.com "
                "(scheme and host, optionally a port; no path)"
            )
        return value.rstrip("/")

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
    def sendgrid_landing_dir(self) -> Path:
        """Where the event-webhook receiver appends SendGrid events for the next extract."""
        return self.landing_dir / "sendgrid"

    @property
    def sales_outcomes_landing_dir(self) -> Path:
        """Where `leadflow outcome` and the sales-outcome callback append outcomes; each
        extract seals what is new into the landing folder (flows/sales/outcomes.py)."""
        return self.landing_dir / "sales_outcomes"

    @property
    def drop_folders(self) -> list[Path]:
        """Folders the extract reads: the inbox and the landing folder."""
        return [self.inbox_dir, self.landing_dir]

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB warehouse file (the embedded default)."""
        return self.data_root / "warehouse.duckdb"

    @property
    def warehouse(self) -> Path | PostgresTarget:
        """Where the warehouse is: the PostgreSQL database when one is set, else the file."""
        if self.warehouse_url is not None:
            return PostgresTarget(self.warehouse_url.get_secret_value())
        return self.warehouse_path

    def has_warehouse(self) -> bool:
        """Whether a run has made the warehouse yet (a PostgreSQL database is there to reach)."""
        warehouse = self.warehouse
        return not isinstance(warehouse, Path) or warehouse.is_file()

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
    def gate_verdict_path(self) -> Path:
        """The gate's last verdict and what it was given for (flows.checks.verdict)."""
        return self.data_root / "gate" / "last-verdict.json"

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
        settings = Settings()
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            key = ".".join(str(part) for part in issue["loc"]) or "settings"
            env_name = (
                key.upper() if key.upper() == "SENDGRID_API_KEY" else f"LEADFLOW_{key.upper()}"
            )
            problems.append(f"{env_name}: {issue['msg']}")
        raise ConfigError(
            f"Invalid LeadFlow configuration in {configuration_source()}: " + "; ".join(problems)
        ) from None
    problems = [*unknown_variable_problems(settings), *folder_problems(settings)]
    if problems:
        raise ConfigError(
            f"Invalid LeadFlow configuration in {configuration_source()}: " + "; ".join(problems)
        )
    return settings


def configuration_source() -> str:
    return "the environment" + (" and .env" if Path(".env").exists() else "")


def known_variables(settings: Settings) -> set[str]:
    """Every LEADFLOW_* name LeadFlow reads: the settings, and what dbt reads (``env_var``)."""
    names = {
        f"LEADFLOW_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if field.validation_alias is None
    }
    return names | dbt_variables(settings.dbt_project_dir)


@cache
def dbt_variables(dbt_project_dir: Path) -> frozenset[str]:
    skipped = {"target", "dbt_packages", "logs"}
    return frozenset(
        name
        for path in dbt_project_dir.rglob("*")
        if path.suffix in (".yml", ".sql") and not skipped & set(path.parts)
        for name in re.findall(r"env_var\(\s*['\"](LEADFLOW_[A-Z0-9_]+)", path.read_text())
    )


def unknown_variable_problems(settings: Settings) -> list[str]:
    """A LEADFLOW_* variable nobody reads is most likely a typo: name it, with the likely fix."""
    given = {name for name in os.environ if name.startswith("LEADFLOW_")}
    if Path(".env").is_file():
        given.update(name for name in dotenv_values(".env") if name.upper().startswith("LEADFLOW_"))
    known = known_variables(settings)
    problems = []
    for name in sorted(given - known):
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1)
        fix = (
            f"did you mean {close[0]}?"
            if close
            else "remove it (docs/operating.md lists the settings)"
        )
        problems.append(f"{name} is not a LeadFlow setting: {fix}")
    return problems


def folder_problems(settings: Settings) -> list[str]:
    """Folders that must exist, and a data folder LeadFlow can write, checked before any work."""
    problems = []
    if settings.mappings_dir is not None and not settings.mappings_dir.is_dir():
        problems.append(
            f"LEADFLOW_MAPPINGS_DIR: {settings.mappings_dir} is not a folder; create it with "
            "your mapping profiles or unset the variable"
        )
    # The nearest existing folder on the way to the data folder is where LeadFlow will write.
    existing = settings.data_root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problems.append(
            f"LEADFLOW_DATA_DIR: {existing} is a file, not a folder; point LEADFLOW_DATA_DIR "
            "at a folder (it is created if missing)"
        )
    elif not os.access(existing, os.W_OK | os.X_OK):
        problems.append(
            f"LEADFLOW_DATA_DIR: {existing} is not writable by this user; point "
            "LEADFLOW_DATA_DIR at a folder you can write, or change its permissions"
        )
    return problems


def apply_prefect_defaults(settings: Settings) -> None:
    """Keep Prefect's state inside the project's data folder unless the operator chose otherwise."""
    os.environ.setdefault("PREFECT_HOME", str(settings.data_root / "prefect"))
