"""Opens the warehouse the configuration names."""

from __future__ import annotations

from app.config import Settings
from app.warehouse.base import Warehouse


def open_warehouse(settings: Settings) -> Warehouse:
    w = settings.warehouse
    if w.backend == "duckdb":
        from app.warehouse.duckdb_store import DuckDBWarehouse

        return DuckDBWarehouse(w.duckdb_path, w.lock_wait_seconds, w.feedback_window_days)
    if w.backend == "bigquery":
        from app.warehouse.bigquery_store import BigQueryWarehouse

        if not settings.cloud.project_id:
            raise ValueError("warehouse.backend = bigquery needs cloud.project_id")
        return BigQueryWarehouse(
            settings.cloud.project_id,
            w.dataset,
            w.location,
            feedback_window_days=w.feedback_window_days,
            write_api_emulator_host=w.write_api_emulator_host,
        )
    raise ValueError(f"warehouse.backend must be duckdb or bigquery, got {w.backend!r}")
