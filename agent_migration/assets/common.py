"""What every asset shares: owner, metadata builders (schemas, reject summaries, previews)."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from agent_migration.cleaning import REJECT, SOURCE_KEY
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


def reject_reasons(reasons: pd.Series, top: int = 10) -> dict[str, int]:
    """Counts per kind of reason ("agents.energy: breaks CHECK ..."), the value left out so kinds group."""
    kinds = reasons.dropna().str.split("; ").explode()
    kinds = kinds.str.replace(r" \(got .*\)$", "", regex=True).str.replace(
        r"agent \d+, which", "agent N, which", regex=True
    )
    return {str(k): int(v) for k, v in kinds.value_counts().head(top).items()}


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


def reject_metadata(frame: pd.DataFrame) -> dict:
    """Rejected count, counts per reason and a small preview of rejected rows."""
    rejected = frame[frame[REJECT].notna()]
    preview = [
        {"source_key": k, "reason": r} for k, r in zip(rejected[SOURCE_KEY], rejected[REJECT], strict=True)
    ]
    return {
        "rows_rejected": dg.MetadataValue.int(len(rejected)),
        "rejected_by_reason": dg.MetadataValue.json(reject_reasons(rejected[REJECT])),
        "rejected_preview": dg.MetadataValue.md(markdown_table(preview)),
    }
