"""The project checks on a hand-made manifest of one model: they find what they look for."""

from __future__ import annotations

from typing import Any

from tests.dbt_project_checks import names_too_long_for_postgres, undescribed, without_tested_key

MODEL_ID = "model.leadflow.leads"


def manifest_of(columns: dict[str, str], *tests: tuple[str, Any]) -> dict[str, Any]:
    """A manifest of model `leads` with these column descriptions and (test, column) tests."""
    nodes: dict[str, Any] = {
        MODEL_ID: {
            "resource_type": "model",
            "name": "leads",
            "description": "One row per lead.",
            "columns": {name: {"description": text} for name, text in columns.items()},
        }
    }
    for number, (test_name, columns_tested) in enumerate(tests):
        # A list is the columns of a combined key, which dbt keeps in the test's kwargs.
        combined = isinstance(columns_tested, list)
        nodes[f"test.leadflow.t{number}"] = {
            "resource_type": "test",
            "attached_node": MODEL_ID,
            "column_name": None if combined else columns_tested,
            "test_metadata": {
                "name": test_name,
                "kwargs": {"combination_of_columns": columns_tested} if combined else {},
            },
        }
    return {"nodes": nodes}


def catalog_of(*columns: str) -> dict[str, Any]:
    return {"nodes": {MODEL_ID: {"columns": {column: {} for column in columns}}}}


def test_a_column_missing_from_the_yaml_or_described_blank_is_found():
    manifest = manifest_of({"lead_id": "The lead.", "stage": "  "})

    assert undescribed(manifest, catalog_of("lead_id", "stage", "score")) == [
        "leads.stage",
        "leads.score",
    ]


def test_a_model_without_a_description_is_found():
    manifest = manifest_of({"lead_id": "The lead."})
    manifest["nodes"][MODEL_ID]["description"] = ""

    assert undescribed(manifest, catalog_of("lead_id")) == ["leads"]


def test_a_model_missing_from_the_warehouse_is_found():
    manifest = manifest_of({"lead_id": "The lead."})

    assert undescribed(manifest, {"nodes": {}}) == ["leads (not in the warehouse)"]


def test_a_key_needs_unique_and_not_null_on_the_same_columns():
    assert without_tested_key(manifest_of({})) == ["leads"]
    assert without_tested_key(manifest_of({}, ("unique", "lead_id"))) == ["leads"]
    assert without_tested_key(manifest_of({}, ("unique", "lead_id"), ("not_null", "email"))) == [
        "leads"
    ]
    assert without_tested_key(manifest_of({}, ("unique", "lead_id"), ("not_null", "lead_id"))) == []


def test_a_combined_key_needs_each_of_its_columns_not_null():
    combined = ("unique_combination_of_columns", ["lead_id", "rule_id"])

    assert without_tested_key(manifest_of({}, combined, ("not_null", "lead_id"))) == ["leads"]
    assert (
        without_tested_key(
            manifest_of({}, combined, ("not_null", "lead_id"), ("not_null", "rule_id"))
        )
        == []
    )


def test_a_unit_test_name_postgres_refuses_is_found():
    manifest = manifest_of({"lead_id": "The lead."})
    manifest["unit_tests"] = {
        "unit_test.leadflow.leads.short": {"name": "short"},
        "unit_test.leadflow.leads.long": {"name": "x" * 64},
        "unit_test.leadflow.leads.limit": {"name": "y" * 63},
    }

    assert names_too_long_for_postgres(manifest) == ["x" * 64]
