"""What every asset shares: owner, metadata builders (schemas, previews)."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from agent_migration.tables import Table

OWNERS = ["team:data-platform"]
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
