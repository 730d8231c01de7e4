"""``leadflow serve``: every deployment of prefect.yaml served from one process, against a
Prefect server that it finds (``PREFECT_API_URL``) or starts on 127.0.0.1 and stops again.

prefect.yaml is the one definition of the deployments: ``prefect deploy --all`` reads it for
workers, and this module reads the same file for ``prefect.serve``. Prefect is imported only
inside functions, so a server started here is known to Prefect before its settings load.
"""

import asyncio
import base64
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from flows.settings import ConfigError

TIMEZONE_PLACEHOLDER = "{{ $LEADFLOW_SCHEDULE_TIMEZONE }}"
PREFECT_SERVER_START = (sys.executable, "-m", "prefect", "server", "start")
SERVER_START_TIMEOUT_S = 180.0
SERVER_STOP_TIMEOUT_S = 20.0

# Every process LeadFlow starts gets telemetry off, whatever the parent's environment says.
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "GX_ANALYTICS_ENABLED": "false",
}


@dataclass(frozen=True)
class ScheduleSpec:
    timezone: str
    cron: str | None = None
    interval_s: float | None = None  # prefect.yaml's `interval`, in seconds

    def describe(self) -> str:
        when = f"cron {self.cron}" if self.cron else f"every {self.interval_s:g} s"
        return f"{when} ({self.timezone})"


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of prefect.yaml, as ``leadflow serve`` needs it."""

    name: str
    entrypoint: str  # path/to/file.py:flow_function, relative to the project
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: tuple[ScheduleSpec, ...] = ()
    concurrency_limit: int | None = None

    @property
    def module_path(self) -> str:
        """``flows/pipeline.py:lead_pipeline`` -> ``flows.pipeline``."""
        file, _, _ = self.entrypoint.partition(":")
        return file.removesuffix(".py").replace("/", ".")

    @property
    def function_name(self) -> str:
        return self.entrypoint.partition(":")[2]


def load_deployment_specs(path: Path, timezone: str) -> list[DeploymentSpec]:
    """The deployments of a prefect.yaml, the time-zone placeholder filled with ``timezone``.

    Raises ConfigError naming the file and the key for anything LeadFlow cannot serve.
    """
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist; give the prefect.yaml to serve with --file"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    deployments = (document or {}).get("deployments") if isinstance(document, dict) else None
    if not isinstance(deployments, list) or not deployments:
        raise ConfigError(f"{path} has no `deployments:` list; see the project's prefect.yaml")
    specs = [
        parse_deployment(path, index, entry, timezone) for index, entry in enumerate(deployments)
    ]
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{path}: deployment names must be unique; repeated: {duplicates}")
    return specs


def parse_deployment(path: Path, index: int, entry: object, timezone: str) -> DeploymentSpec:
    where = f"{path}: deployments[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping with name, entrypoint and schedules")
    name, entrypoint = entry.get("name"), entry.get("entrypoint")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} has no `name`")
    where = f"{path}: deployment {name!r}"
    if not isinstance(entrypoint, str) or ".py:" not in entrypoint:
        raise ConfigError(
            f"{where}: `entrypoint` must look like flows/pipeline.py:lead_pipeline, "
            f"not {entrypoint!r}"
        )
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ConfigError(f"{where}: `parameters` must be a mapping of parameter to value")
    schedules = tuple(
        parse_schedule(f"{where}: schedules[{position}]", schedule, timezone)
        for position, schedule in enumerate(entry.get("schedules") or [])
    )
    limit = entry.get("concurrency_limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{where}: `concurrency_limit` must be a whole number of runs, 1 or more")
    return DeploymentSpec(
        name=name,
        entrypoint=entrypoint,
        description=str(entry.get("description") or ""),
        parameters=parameters,
        schedules=schedules,
        concurrency_limit=limit,
    )


def parse_schedule(where: str, schedule: object, timezone: str) -> ScheduleSpec:
    if not isinstance(schedule, dict):
        raise ConfigError(f"{where} must be a mapping with `cron` or `interval`")
    zone = str(schedule.get("timezone") or "UTC").replace(TIMEZONE_PLACEHOLDER, timezone)
    cron, interval = schedule.get("cron"), schedule.get("interval")
    if (cron is None) == (interval is None):
        raise ConfigError(f"{where} needs exactly one of `cron` or `interval` (seconds)")
    if cron is not None:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=str(cron), timezone=zone)
        except ValueError as error:
            raise ConfigError(f"{where}: {str(error).splitlines()[-1].strip()}") from None
        return ScheduleSpec(timezone=zone, cron=str(cron))
    if not isinstance(interval, int | float) or interval <= 0:
        raise ConfigError(f"{where}: `interval` must be a number of seconds above 0")
    return ScheduleSpec(timezone=zone, interval_s=float(interval))


def load_flow(spec: DeploymentSpec) -> Any:
    """Import the deployment's flow as a module of the package, so its annotations resolve."""
    try:
        module = importlib.import_module(spec.module_path)
        flow = getattr(module, spec.function_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(
            f"deployment {spec.name!r}: cannot load {spec.entrypoint} ({error})"
        ) from None
    if not hasattr(flow, "to_deployment"):
        raise ConfigError(f"deployment {spec.name!r}: {spec.entrypoint} is not a Prefect flow")
    return flow


def schedule_objects(spec: DeploymentSpec) -> list[Any]:
    from prefect.schedules import Cron, Interval

    return [
        Cron(schedule.cron, timezone=schedule.timezone)
        if schedule.cron
        else Interval(timedelta(seconds=schedule.interval_s or 0), timezone=schedule.timezone)
        for schedule in spec.schedules
    ]


def runner_deployments(specs: list[DeploymentSpec]) -> list[Any]:
    """``flow.to_deployment`` of each spec, entrypoints as module paths (a run imports
    ``flows.pipeline``, not the file under another name)."""
    from prefect.deployments.runner import EntrypointType

    return [
        load_flow(spec).to_deployment(
            name=spec.name,
            description=spec.description or None,
            parameters=spec.parameters,
            schedules=schedule_objects(spec),
            concurrency_limit=spec.concurrency_limit,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for spec in specs
    ]


def next_run_at(spec: DeploymentSpec, now: datetime) -> datetime | None:
    """When the server's scheduler will next run the deployment, by Prefect's own schedule
    arithmetic; None for a deployment without a schedule."""
    from prefect.server.schemas.schedules import CronSchedule, IntervalSchedule

    upcoming: list[datetime] = []
    for schedule in spec.schedules:
        server_schedule = (
            CronSchedule(cron=schedule.cron, timezone=schedule.timezone)
            if schedule.cron
            else IntervalSchedule(
                interval=timedelta(seconds=schedule.interval_s or 0), timezone=schedule.timezone
            )
        )
        dates = asyncio.run(server_schedule.get_dates(n=1, start=now))
        upcoming.extend(dates)
    return min(upcoming, default=None)


# --- the Prefect server ---------------------------------------------------------------------


@dataclass
class PrefectServer:
    api_url: str
    process: subprocess.Popen[bytes] | None = None  # None: a server someone else runs
    log_path: Path | None = None

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/").removesuffix("/api")

    @property
    def started_here(self) -> bool:
        return self.process is not None


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment(environment: Mapping[str, str], prefect_home: Path) -> dict[str, str]:
    """The child server's environment: the project's PREFECT_HOME, telemetry off, and none of
    the client settings that would point it at another server."""
    child = {
        name: value
        for name, value in environment.items()
        if name not in ("PREFECT_API_URL", "PREFECT_UI_URL")
    }
    return {**child, **TELEMETRY_OFF, "PREFECT_HOME": str(prefect_home)}


def auth_header(environment: Mapping[str, str]) -> dict[str, str]:
    """Basic auth for a server started with PREFECT_SERVER_API_AUTH_STRING (user:password)."""
    secret = environment.get("PREFECT_API_AUTH_STRING")
    if not secret:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


def is_healthy(api_url: str, environment: Mapping[str, str]) -> bool:
    request = urllib.request.Request(
        api_url.removesuffix("/") + "/health", headers=auth_header(environment)
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_server(prefect_home: Path, timeout_s: float = SERVER_START_TIMEOUT_S) -> PrefectServer:
    """``prefect server start`` on a free 127.0.0.1 port, in its own process group (Ctrl-C in
    the terminal reaches LeadFlow, which stops the runner before the server); waits until the
    API answers."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    port = free_loopback_port()
    log_path = prefect_home / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*PREFECT_SERVER_START, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_environment(os.environ, prefect_home),
            start_new_session=True,
        )
    server = PrefectServer(f"http://127.0.0.1:{port}/api", process, log_path)
    deadline = time.monotonic() + timeout_s
    while not is_healthy(server.api_url, os.environ):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise ConfigError(
                f"the Prefect server did not start within {timeout_s:.0f} s; its log "
                f"({log_path}) ends with:\n{tail(log_path)}"
            )
        time.sleep(0.5)
    return server


def stop_server(server: PrefectServer, timeout_s: float = SERVER_STOP_TIMEOUT_S) -> None:
    """Stop a server started here and everything in its process group; never leaves one."""
    process = server.process
    if process is None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    # Whatever is left of the group (a server that ignored SIGTERM, a child of it) goes now.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def prefect_server(prefect_home: Path) -> Iterator[PrefectServer]:
    """The server in PREFECT_API_URL if that is set (it must answer), else one started here
    for as long as the block runs. PREFECT_API_URL is set for this process and its children."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        if not is_healthy(configured, os.environ):
            raise ConfigError(
                f"no Prefect server answers at PREFECT_API_URL={configured}; start it "
                "(`prefect server start`) or unset PREFECT_API_URL to let LeadFlow start one"
            )
        yield PrefectServer(configured)
        return
    server = start_server(prefect_home)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        yield server
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        stop_server(server)


# --- failed runs in the terminal -------------------------------------------------------------


@dataclass(frozen=True)
class FailedRun:
    flow_run_id: str
    flow: str
    run: str
    state: str
    message: str
    ended_at: datetime | None

    def describe(self, ui_url: str) -> str:
        when = f"{self.ended_at:%H:%M:%S} " if self.ended_at else ""
        return (
            f"{when}{self.state}: {self.flow} run {self.run}: {self.message or 'no message'} "
            f"({ui_url}/runs/flow-run/{self.flow_run_id})"
        )


def unseen_failures(runs: list[FailedRun], seen: set[str]) -> list[FailedRun]:
    """The runs not reported yet, oldest first; remembers them in ``seen``."""
    new = [run for run in runs if run.flow_run_id not in seen]
    seen.update(run.flow_run_id for run in new)
    return sorted(new, key=lambda run: run.ended_at or datetime.min.replace(tzinfo=UTC))


def read_failed_runs(flow_names: list[str], since: datetime) -> list[FailedRun]:
    """Failed or crashed deployment runs of these flows that ended after ``since``."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        flows = {
            flow.id: flow.name
            for flow in client.read_flows(
                flow_filter=FlowFilter(name=FlowFilterName(any_=flow_names))
            )
        }
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=flow_names)),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
                ),
                end_time=FlowRunFilterEndTime.model_validate({"after_": since}),
                deployment_id=FlowRunFilterDeploymentId(is_null_=False),
            ),
        )
    return [
        FailedRun(
            flow_run_id=str(run.id),
            flow=flows.get(run.flow_id, "?"),
            run=run.name,
            state=(run.state.name if run.state else None) or "Failed",
            message=(run.state.message or "") if run.state else "",
            ended_at=run.end_time,
        )
        for run in runs
    ]


@contextmanager
def watch_failed_runs(
    flow_names: list[str],
    report: Callable[[FailedRun], None],
    interval_s: float = 5.0,
) -> Iterator[None]:
    """Report each failed or crashed run of these flows once, while the block runs."""
    stop = threading.Event()
    since = datetime.now(UTC)
    seen: set[str] = set()

    def poll() -> None:
        while not stop.wait(interval_s):
            try:
                for run in unseen_failures(read_failed_runs(flow_names, since), seen):
                    report(run)
            except Exception:  # the server may be restarting: try again next time
                continue

    watcher = threading.Thread(target=poll, name="leadflow-failed-runs", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=interval_s + 5)
