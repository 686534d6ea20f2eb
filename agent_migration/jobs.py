"""Jobs: `migrate` runs every asset and every check."""

from __future__ import annotations

import dagster as dg

migrate = dg.define_asset_job(
    "migrate",
    selection=dg.AssetSelection.all(),
    description="Snapshot the SQLite source, clean and remap every table, publish to PostgreSQL, verify.",
)
