"""leadflow serve's pieces as plain functions: prefect.yaml, schedules, the server's
environment, failed runs; and the deployed flows' parameters."""

import inspect
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.serve import (
    DeploymentSpec,
    FailedRun,
    ScheduleSpec,
    auth_header,
    load_deployment_specs,
    load_flow,
    next_run_at,
    prefect_server,
    runner_deployments,
    server_environment,
    unseen_failures,
)
from flows.settings import PROJECT_ROOT, ConfigError

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prefect.yaml"
    path.write_text(text)
    return path


def test_the_project_deploys_the_pipeline_hourly_sends_in_business_hours_and_refreshes_nightly():
    specs = {spec.name: spec for spec in load_deployment_specs(PREFECT_YAML, "Europe/Berlin")}
    assert set(specs) == {
        "hourly",
        "business-hours",
        "nightly-full-refresh",
        "reps-daily-digest",
    }
    assert specs["hourly"].entrypoint == "flows/pipeline.py:lead_pipeline"
    assert specs["hourly"].schedules == (ScheduleSpec("Europe/Berlin", cron="0 * * * *"),)
    assert specs["business-hours"].entrypoint == "flows/send.py:send_due_nurture"
    assert specs["business-hours"].schedules == (
        ScheduleSpec("Europe/Berlin", cron="*/15 8-17 * * 1-5"),
    )
    nightly = specs["nightly-full-refresh"]
    assert nightly.entrypoint == "flows/pipeline.py:lead_pipeline"
    assert nightly.parameters == {"full_refresh": True, "with_docs": True}
    digest = specs["reps-daily-digest"]
    assert digest.entrypoint == "flows/digest.py:reps_daily_digest"
    assert digest.schedules == (ScheduleSpec("Europe/Berlin", cron="0 7 * * 1-5"),)
    assert all(spec.concurrency_limit == 1 for spec in specs.values())


def test_every_deployment_of_prefect_yaml_builds_from_its_flow_with_parameters_it_takes():
    specs = load_deployment_specs(PREFECT_YAML, "UTC")
    deployments = runner_deployments(specs)
    for spec, deployment in zip(specs, deployments, strict=True):
        accepted = inspect.signature(load_flow(spec).fn).parameters
        assert set(spec.parameters) <= set(accepted), spec.name
        assert deployment.name == spec.name
        assert deployment.parameters == spec.parameters
        # A run imports the package module (flows.pipeline), never the file under another name.
        assert deployment.entrypoint == f"{spec.module_path}.{spec.function_name}"
        assert len(deployment.schedules) == 1


FLOWS = sorted({spec.entrypoint for spec in load_deployment_specs(PREFECT_YAML, "UTC")})


@pytest.mark.parametrize("entrypoint", FLOWS)
def test_a_deployed_flows_parameters_validate_an_iso_time_as_the_ui_sends_it(entrypoint):
    flow = load_flow(DeploymentSpec(name="x", entrypoint=entrypoint))
    schema = flow.parameters.model_dump()
    as_of = schema["properties"]["as_of"]
    assert {"format": "date-time", "type": "string"} in as_of["anyOf"]
    assert as_of.get("description"), "as_of is documented in the flow's docstring"
    # Real types, not strings: Prefect resolves string annotations against the module it
    # loaded, which failed with "Lead_PipelineModel is not fully defined" in served runs.
    for parameter in inspect.signature(flow.fn).parameters.values():
        assert not isinstance(parameter.annotation, str), parameter.name
    validated = flow.validate_parameters({"as_of": "2026-12-01T08:15:00"})
    assert validated["as_of"] == datetime(2026, 12, 1, 8, 15)
    with pytest.raises(Exception, match="as_of"):
        flow.validate_parameters({"as_of": "first thing Monday"})


def test_the_pipelines_refresh_parameters_are_typed_and_documented():
    flow = load_flow(DeploymentSpec(name="x", entrypoint="flows/pipeline.py:lead_pipeline"))
    properties = flow.parameters.model_dump()["properties"]
    for name in ("full_refresh", "with_docs"):
        assert properties[name]["type"] == "boolean"
        assert properties[name]["description"]
    assert flow.validate_parameters({"full_refresh": "true"})["full_refresh"] is True


def test_the_time_zone_fills_the_placeholder_and_an_interval_is_in_seconds(tmp_path):
    path = write(
        tmp_path,
        """
deployments:
  - name: quick
    entrypoint: flows/send.py:send_due_nurture
    schedules:
      - interval: 10
        timezone: "{{ $LEADFLOW_SCHEDULE_TIMEZONE }}"
      - cron: "0 6 * * *"
""",
    )
    (spec,) = load_deployment_specs(path, "America/New_York")
    assert spec.schedules == (
        ScheduleSpec("America/New_York", interval_s=10.0),
        ScheduleSpec("UTC", cron="0 6 * * *"),
    )
    assert spec.schedules[0].describe() == "every 10 s (America/New_York)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployments: []", "has no `deployments:` list"),
        (
            "deployments: [{entrypoint: flows/send.py:send_due_nurture}]",
            "deployments[0] has no `name`",
        ),
        (
            "deployments: [{name: a, entrypoint: send_due_nurture}]",
            "deployment 'a': `entrypoint` must",
        ),
        (
            "deployments: [{name: a, entrypoint: f.py:g, schedules: [{cron: 'every day'}]}]",
            "deployment 'a': schedules[0]",
        ),
        (
            "deployments: [{name: a, entrypoint: f.py:g, schedules: [{cron: '* * * * *', interval: 5}]}]",
            "exactly one of `cron` or `interval`",
        ),
        (
            "deployments: [{name: a, entrypoint: f.py:g, schedules: [{interval: -1}]}]",
            "`interval` must be a number",
        ),
        (
            "deployments: [{name: a, entrypoint: f.py:g}, {name: a, entrypoint: f.py:g}]",
            "repeated: ['a']",
        ),
        (
            "deployments: [{name: a, entrypoint: f.py:g, parameters: [1]}]",
            "`parameters` must be a mapping",
        ),
        (
            "deployments: [{name: a, entrypoint: f.py:g, concurrency_limit: 0}]",
            "`concurrency_limit` must",
        ),
        ("deployments: [", "is not valid YAML"),
    ],
)
def test_a_broken_deployments_file_is_named_with_the_key_and_the_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"prefect\.yaml") as raised:
        load_deployment_specs(path, "UTC")
    assert message in str(raised.value)


def test_a_missing_deployments_file_says_how_to_give_one(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist; give the prefect\.yaml to serve"):
        load_deployment_specs(tmp_path / "nope.yaml", "UTC")


def test_a_flow_that_cannot_be_loaded_is_named():
    with pytest.raises(ConfigError, match=r"deployment 'x': cannot load flows/nothing.py:f"):
        load_flow(DeploymentSpec(name="x", entrypoint="flows/nothing.py:f"))
    with pytest.raises(ConfigError, match="is not a Prefect flow"):
        load_flow(DeploymentSpec(name="x", entrypoint="flows/runs.py:utc_now"))


def test_the_next_run_follows_the_cron_in_its_time_zone():
    business_hours = DeploymentSpec(
        name="b",
        entrypoint="flows/send.py:send_due_nurture",
        schedules=(ScheduleSpec("Europe/Berlin", cron="*/15 8-17 * * 1-5"),),
    )
    saturday_noon = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    monday_eight_berlin = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    assert next_run_at(business_hours, saturday_noon) == monday_eight_berlin
    tuesday_0905 = datetime(2026, 12, 8, 8, 5, tzinfo=UTC)  # 09:05 in Berlin
    assert next_run_at(business_hours, tuesday_0905) == datetime(2026, 12, 8, 8, 15, tzinfo=UTC)
    assert next_run_at(DeploymentSpec(name="n", entrypoint="f.py:g"), saturday_noon) is None


def test_the_server_gets_the_projects_home_telemetry_off_and_no_client_url(tmp_path):
    environment = server_environment(
        {
            "PATH": "/bin",
            "PREFECT_API_URL": "http://elsewhere/api",
            "DO_NOT_TRACK": "0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "true",
            "PREFECT_SERVER_API_AUTH_STRING": "admin:pass",
        },
        tmp_path / "prefect",
    )
    assert environment["PATH"] == "/bin"
    assert "PREFECT_API_URL" not in environment
    assert environment["PREFECT_HOME"] == str(tmp_path / "prefect")
    assert environment["DO_NOT_TRACK"] == "1"
    assert environment["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert environment["PREFECT_SERVER_API_AUTH_STRING"] == "admin:pass"  # a team server's auth


def test_the_health_check_authenticates_like_a_prefect_client():
    assert auth_header({}) == {}
    assert auth_header({"PREFECT_API_AUTH_STRING": "admin:pass"}) == {
        "Authorization": "Basic YWRtaW46cGFzcw=="
    }


def test_a_configured_server_that_does_not_answer_is_named(monkeypatch, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    expected = f"no Prefect server answers at PREFECT_API_URL={url}"
    with pytest.raises(ConfigError, match=re.escape(expected)), prefect_server(tmp_path):
        pass


def run(run_id: str, minute: int) -> FailedRun:
    ended = datetime(2026, 12, 7, 9, minute, tzinfo=UTC)
    return FailedRun(run_id, "lead_pipeline", f"run-{run_id}", "Failed", "dbt build failed", ended)


def test_each_failed_run_is_reported_once_oldest_first():
    seen: set[str] = set()
    assert [r.flow_run_id for r in unseen_failures([run("b", 5), run("a", 1)], seen)] == ["a", "b"]
    assert [r.flow_run_id for r in unseen_failures([run("a", 1), run("c", 7)], seen)] == ["c"]
    assert unseen_failures([run("c", 7)], seen) == []


def test_a_failed_run_reads_as_when_what_why_and_where():
    assert run("abc", 5).describe("http://127.0.0.1:4200") == (
        "09:05:00 Failed: lead_pipeline run run-abc: dbt build failed "
        "(http://127.0.0.1:4200/runs/flow-run/abc)"
    )
