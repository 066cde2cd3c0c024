"""Prefect flows and the CLI: wiring only. The work lives in tasks/."""
