"""The BigQuery dataset and its tables, generated from app.schemas (the one declaration)."""

from __future__ import annotations

import json

from cdktf_cdktf_provider_google.bigquery_dataset import BigqueryDataset
from cdktf_cdktf_provider_google.bigquery_table import (
    BigqueryTable,
    BigqueryTableTimePartitioning,
)
from constructs import Construct

from app.schemas import TABLES, bigquery_fields
from infra.checks import GOOGLE_MANAGED, skip
from infra.config import EnvironmentConfig
from infra.lifecycle import keep


class Warehouse(Construct):
    def __init__(self, scope: Construct, id: str, config: EnvironmentConfig):
        super().__init__(scope, id)
        self.dataset = BigqueryDataset(
            self,
            "dataset",
            project=config.project_id,
            dataset_id=config.dataset_id,
            location=config.bigquery_location,
            description="recloop: predictions, feedback and training runs",
            labels=config.all_labels,
            delete_contents_on_destroy=False,
        )
        self.tables = {
            schema.name: BigqueryTable(
                self,
                schema.name,
                project=config.project_id,
                dataset_id=self.dataset.dataset_id,
                table_id=schema.name,
                description=schema.description,
                schema=json.dumps(bigquery_fields(schema)),
                time_partitioning=BigqueryTableTimePartitioning(
                    type="DAY", field=schema.partition_by
                )
                if schema.partition_by
                else None,
                clustering=list(schema.cluster_by) or None,
                deletion_protection=True,
                labels=config.all_labels,
            )
            for schema in TABLES
        }
        keep(self.dataset)
        skip(self.dataset, CKV_GCP_81=GOOGLE_MANAGED)
        for table in self.tables.values():
            keep(table)
            skip(table, CKV_GCP_80=GOOGLE_MANAGED)
