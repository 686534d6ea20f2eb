"""Plain text for the console and the reports: fixed-width tables and short cells."""

from __future__ import annotations

NONE = "-"


def text_table(heads: list[str], rows: list[list]) -> str:
    """A plain fixed-width table (numbers right-aligned, with thousands separators)."""
    cells = [
        [f"{v:,}" if isinstance(v, int) else (NONE if v is None else str(v)) for v in row] for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(heads)]

    def line(values: list[str], numeric: list[bool]) -> str:
        return "  ".join(
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        )

    numeric = [i > 0 for i in range(len(heads))]
    return "\n".join(
        [line(heads, numeric), line(["-" * w for w in widths], numeric)] + [line(r, numeric) for r in cells]
    )


def checks_cell(counts: list[int] | None) -> str:
    return NONE if counts is None else "/".join(str(n) for n in counts)


def not_carried(extra: dict[str, list[str]]) -> list[str]:
    """What the source holds that the plan has no place for (`files.check_source_shape`'s extras):
    tables, and columns of migrated tables. Such data stays behind in SQLite."""
    found = [f"table {t}" for t in extra.get("(tables)", [])]
    return found + [f"column {t}.{c}" for t, cols in extra.items() if t != "(tables)" for c in cols]
