"""What every asset and op shows: owners, asset names and tags, metadata builders (schemas, previews,
validation reports)."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from agent_migration.core.tables import Table
from agent_migration.validation.run import Report, TableReport

OWNERS = ["team:data-platform"]
REJECTED_ROWS = "rejected_rows"  # the asset of migration.rejected_rows
CUTOVER_TAG = "agent_migration/cutover"  # a run that records the cutover
PREVIEW_ROWS = 10


def table_schema(table: Table) -> dg.TableSchema:
    """The target table's columns, as Dagster shows them (`dagster/column_schema`)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                c.sql_type,
                description=f"from {table.source}.{c.source}" if c.source else None,
                constraints=dg.TableColumnConstraints(
                    nullable=not (c.not_null or c.primary_key),
                    unique=c.unique or c.primary_key,
                    other=[f"CHECK ({c.check_sql})"] if c.check_sql else [],
                ),
            )
            for c in table.columns
        ]
    )


def frame_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()])


def markdown_table(rows: list[dict], limit: int = PREVIEW_ROWS, width: int = 80) -> str:
    if not rows:
        return "_none_"
    heads = list(rows[0])

    def cell(v) -> str:
        text = str(v).replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(cell(r[h]) for h in heads) + " |" for r in rows[:limit]]
    return "\n".join(lines)


def table_metadata(t: TableReport) -> dict:
    return {
        "rows_compared": t.compared,
        "matched": t.matched,
        "differing": t.differing,
        "missing": t.missing,
        "extra": t.extra,
        "differences": dg.MetadataValue.md("\n".join(f"- `{d.line()}`" for d in t.differences) or "_none_"),
    }


def report_metadata(report: Report) -> dict:
    rows = [
        {
            "table": t.name,
            "rows compared": t.compared,
            "matched": t.matched,
            "differing": t.differing,
            "missing": t.missing,
            "extra": t.extra,
        }
        for t in report.tables
    ]
    return {
        "summary": dg.MetadataValue.md(markdown_table(rows, limit=len(rows))),
        "passed": report.ok,
        "snapshot": dg.MetadataValue.path(report.snapshot),
        "published_by_run": report.published_by,
        "mode": report.mode,
        "seconds": round(report.seconds, 2),
        "notes": dg.MetadataValue.md("\n".join(report.notes) or "_none_"),
    }


def log_report(log, report: Report) -> None:
    """One line per difference (the first 20 per table), then the summary table."""
    for line in report.lines():
        log.error(line)
    log.info(report.summary())
