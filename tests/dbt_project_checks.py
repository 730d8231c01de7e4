"""The house rules of the dbt project that dbt does not check itself, read from the manifest
and catalog of `dbt docs generate`: every model, seed and snapshot is described, with every
column the warehouse has, and has a key tested unique and not null; and no name is too long
for a PostgreSQL relation."""

from __future__ import annotations

from typing import Any

DOCUMENTED_RESOURCES = ("model", "seed", "snapshot")

Artifact = dict[str, Any]


def documented_nodes(manifest: Artifact) -> dict[str, Artifact]:
    return {
        unique_id: node
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] in DOCUMENTED_RESOURCES
    }


def undescribed(manifest: Artifact, catalog: Artifact) -> list[str]:
    """The models, seeds and snapshots without a description or missing from the warehouse,
    and as `node.column` the columns the warehouse has that their YAML does not describe."""
    missing = []
    for unique_id, node in documented_nodes(manifest).items():
        if not node["description"].strip():
            missing.append(node["name"])
        if unique_id not in catalog["nodes"]:
            missing.append(f"{node['name']} (not in the warehouse)")
            continue
        described = {
            name for name, column in node["columns"].items() if column["description"].strip()
        }
        missing += [
            f"{node['name']}.{column}"
            for column in catalog["nodes"][unique_id]["columns"]
            if column not in described
        ]
    return missing


def without_tested_key(manifest: Artifact) -> list[str]:
    """The models, seeds and snapshots with no key tested: neither a column tested unique and
    not_null, nor columns tested unique together (unique_combination_of_columns) and each
    not_null. A test with a `where` counts: the incremental models test the rows a run wrote."""
    tests_of: dict[str, list[Artifact]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test" and node.get("test_metadata"):
            tests_of.setdefault(node["attached_node"], []).append(node)
    missing = []
    for unique_id, node in documented_nodes(manifest).items():
        tests = tests_of.get(unique_id, [])
        not_null = columns_tested(tests, "not_null")
        keys = [{column} for column in columns_tested(tests, "unique")] + [
            set(test["test_metadata"]["kwargs"]["combination_of_columns"])
            for test in tests
            if test["test_metadata"]["name"] == "unique_combination_of_columns"
        ]
        if not any(key <= not_null for key in keys):
            missing.append(node["name"])
    return missing


def columns_tested(tests: list[Artifact], test_name: str) -> set[str]:
    return {test["column_name"] for test in tests if test["test_metadata"]["name"] == test_name}


# PostgreSQL's NAMEDATALEN - 1: dbt makes a relation of each model, seed, snapshot and unit
# test (the unit test's fixture table), and PostgreSQL refuses a longer name.
POSTGRES_NAME_LIMIT = 63


def names_too_long_for_postgres(manifest: Artifact) -> list[str]:
    """The models, seeds, snapshots and unit tests whose relation name PostgreSQL refuses."""
    nodes = [*documented_nodes(manifest).values(), *manifest.get("unit_tests", {}).values()]
    return sorted(node["name"] for node in nodes if len(node["name"]) > POSTGRES_NAME_LIMIT)
