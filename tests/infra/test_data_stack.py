import json

import pytest

from app.schemas import TABLES, bigquery_fields
from tests.infra.helpers import one, resources

ENVS = ("dev", "prod")


@pytest.mark.parametrize("env", ENVS)
def test_tables_come_from_the_app_schemas_partitioned_and_protected(stacks, env):
    data = stacks[f"{env}-data"]
    dataset = one(data, "google_bigquery_dataset", dataset_id=f"recloop_{env}")
    assert dataset["delete_contents_on_destroy"] is False
    tables = {t["table_id"]: t for t in resources(data, "google_bigquery_table").values()}
    assert set(tables) == {t.name for t in TABLES}
    for schema in TABLES:
        table = tables[schema.name]
        assert json.loads(table["schema"]) == bigquery_fields(schema)
        assert table["deletion_protection"] is True
        if schema.partition_by:
            assert table["time_partitioning"] == {"type": "DAY", "field": schema.partition_by}
        else:
            assert "time_partitioning" not in table
    assert tables["predictions"]["clustering"] == ["policy_version"]
    # the feedback window prunes on the warehouse's clock, never the sender's
    for logged in ("predictions", "feedback"):
        assert tables[logged]["time_partitioning"]["field"] == "ingested_at"
    # the ledger head is written only by DML (a compare-and-swap), one row, unpartitioned
    assert "time_partitioning" not in tables["ledger_head"]


@pytest.mark.parametrize("env", ENVS)
def test_buckets_are_uniform_private_and_versioned(stacks, env):
    buckets = resources(stacks[f"{env}-data"], "google_storage_bucket")
    assert {b["name"] for b in buckets.values()} == {
        f"recloop-{env}-artifacts",
        f"recloop-{env}-function-sources",
    }
    for bucket in buckets.values():
        assert bucket["uniform_bucket_level_access"] is True
        assert bucket["public_access_prevention"] == "enforced"
        assert bucket["versioning"] == {"enabled": True}
        assert bucket["force_destroy"] is False


@pytest.mark.parametrize("env", ENVS)
def test_topics_dead_letter_and_registry(stacks, env):
    data = stacks[f"{env}-data"]
    topics = {t["name"] for t in resources(data, "google_pubsub_topic").values()}
    assert topics == {
        "recloop-prediction-logs",
        "recloop-feedback",
        "recloop-simulate",
        "recloop-retrain",
        "recloop-dead-letter",
    }
    subscription = one(data, "google_pubsub_subscription", name="recloop-dead-letter")
    assert subscription["retry_policy"] == {"minimum_backoff": "10s", "maximum_backoff": "600s"}
    assert (
        one(data, "google_artifact_registry_repository", repository_id="recloop")["format"]
        == "DOCKER"
    )


@pytest.mark.parametrize("stack", ["dev-data", "prod-data", "dev-bootstrap"])
def test_apis_stay_enabled_when_a_stack_is_destroyed(stacks, stack):
    services = resources(stacks[stack], "google_project_service")
    assert services
    assert all(s["disable_on_destroy"] is False for s in services.values())


def test_remote_state_per_environment_and_layer(stacks):
    for env in ENVS:
        for layer in ("data", "app"):
            backend = stacks[f"{env}-{layer}"]["terraform"]["backend"]["gcs"]
            assert backend == {"bucket": f"recloop-{env}-tfstate", "prefix": f"{env}/{layer}"}
    assert "local" in stacks["dev-bootstrap"]["terraform"]["backend"]
