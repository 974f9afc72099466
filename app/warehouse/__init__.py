"""Where predictions, feedback and training runs are kept: DuckDB locally, BigQuery in cloud."""
