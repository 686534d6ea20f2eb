"""The report of one scale: medians and ratios within the run (JSON), and the Markdown table."""

from __future__ import annotations

import statistics

from agent_migration.benchmark.measure import MIB, Measurement
from agent_migration.benchmark.phases import PHASES
from agent_migration.benchmark.steps import STEPS, Bench

HEADER = ("step", "wall s", "rows/s", "peak RSS largest (MiB)", "peak RSS sum (MiB)", "× migrate")
HEADER += ("× pgloader", "× COPY limit", "× Arrow limit")
RATIOS = {  # JSON key -> the step every step's wall time is divided by
    "x_migrate": "migrate",
    "x_pgloader": "pgloader",
    "x_copy_limit": "copy_limit",
    "x_arrow_limit": "arrow_limit",
}


def step_summary(label: str, done: list[tuple[Measurement, int]]) -> dict:
    """The medians over the runs of one step that succeeded."""
    ms, rows = [m for m, _ in done], done[0][1]
    wall = statistics.median(m.wall for m in ms)
    return {
        "label": label,
        "status": "ok",
        "wall_s": round(wall, 3),
        "rows": rows,
        "rows_per_s": round(rows / wall),
        "peak_rss_largest_mib": round(statistics.median(m.peak_largest for m in ms) / MIB, 1),
        "peak_rss_sum_mib": round(statistics.median(m.peak_sum for m in ms) / MIB, 1),
        "wall_s_per_run": [round(m.wall, 3) for m in ms],
    }


def ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 3) if value is not None and base else None


def reject_heavy(steps: dict) -> dict | None:
    """The reject-heavy run against the clean full migrate of the same scale (wall and both peaks)."""
    rejects, clean = steps["migrate_rejects"], steps["migrate"]
    if "wall_s" not in rejects or "wall_s" not in clean:
        return None
    keys = {"wall_s": "wall", "peak_rss_largest_mib": "peak_rss_largest", "peak_rss_sum_mib": "peak_rss_sum"}
    return {f"{name}_x_migrate": ratio(rejects[key], clean[key]) for key, name in keys.items()}


def phase_medians(phases: list[dict]) -> dict[str, dict[str, float]]:
    """Per Dagster job step, the median seconds of each phase over the runs."""
    found: dict[str, dict[str, float]] = {}
    for step in STEPS:
        runs = [p[step] for p in phases if step in p]
        names = list(dict.fromkeys(n for r in runs for n in r))
        if runs:
            found[step] = {n: round(statistics.median(r.get(n, 0.0) for r in runs), 2) for n in names}
    return found


def summarize(bench: Bench, runs: list[dict], source: dict, context: dict, phases: list[dict] = ()) -> dict:
    """One scale's report: `context` (command, date, machine, target), the source, every step."""
    steps = {}
    for name, label in STEPS.items():
        done = [r[name] for r in runs if name in r and r[name][0].returncode == 0]
        steps[name] = step_summary(label, done) if done else {"label": label, "status": bench.status(name)}
        if not done and steps[name]["status"] == "ok":
            steps[name]["status"] = "failed"
    for s in steps.values():
        for key, ref in RATIOS.items():
            s[key] = ratio(s.get("wall_s"), steps[ref].get("wall_s"))
    return {
        "scale": bench.scale,
        **context,
        "source": {**source, "total_rows": sum(source["rows"].values())},
        "resync_1pct_changed_rows": bench.changed,
        "cutover_changed_rows": bench.changed_before_cutover,
        "repeat": len(runs),
        "pgloader": bench.status("pgloader"),
        "steps": steps,
        "phases": phase_medians(list(phases)),
        "reject_heavy": reject_heavy(steps),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def table(steps: dict) -> list[str]:
    """The Markdown table of the steps: header, rule, one line per step."""
    rows = [
        [s["label"], _fmt(s.get("wall_s"), ".2f"), _fmt(s.get("rows_per_s"), ",.0f")]
        + [_fmt(s.get("peak_rss_largest_mib"), ",.0f"), _fmt(s.get("peak_rss_sum_mib"), ",.0f")]
        + [_fmt(s[key], ".2f") for key in RATIOS]
        for s in steps.values()
    ]
    return grid(list(HEADER), rows)


def grid(heads: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [heads, *rows]) for i in range(len(heads))]

    def line(cells) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return f"| {' | '.join(padded)} |"

    rule = (
        "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    )
    return [line(heads), rule, *map(line, rows)]


def notes(report: dict) -> str:
    """The lines under the table: source, changes, the reject-heavy ratio, what did not run."""
    src, steps = report["source"], report["steps"]
    text = f"Source written in {src['generate_s']:.2f} s"
    if src.get("reject_heavy_s") is not None:
        text += f", its reject-heavy copy in {src['reject_heavy_s']:.2f} s"
    text += (
        f" (in no ratio). The 1 % re-sync follows {report['resync_1pct_changed_rows']:,} changed source rows"
        f"; the cutover, {report.get('cutover_changed_rows', 0):,} changed after validate."
    )
    if heavy := report["reject_heavy"]:
        text += (
            f"\nreject-heavy / clean migrate = {heavy['wall_x_migrate']:.2f} (wall), "
            f"{_fmt(heavy['peak_rss_largest_x_migrate'], '.2f')} (peak RSS largest), "
            f"{_fmt(heavy['peak_rss_sum_x_migrate'], '.2f')} (peak RSS sum)."
        )
    others = [
        f"{s['label']}: {s['status']}" for n, s in steps.items() if n != "pgloader" and s["status"] != "ok"
    ]
    text += "\n" + "; ".join([f"pgloader: {report['pgloader']}", *others]) + "."
    return text + " Peak RSS: the step's own processes, not the PostgreSQL server's."


def markdown(report: dict) -> str:
    src, machine = report["source"], report["machine"]
    tables = ", ".join(f"{t} {n:,}" for t, n in src["rows"].items())
    median = f", median of {report['repeat']} runs" if report["repeat"] > 1 else ""
    return "\n".join(
        [
            f"Scale `{report['scale']}`: {src['total_rows']:,} source rows ({tables}); "
            f"{machine['cpus']} CPUs, {machine['memory_gib']} GiB RAM; {report['date']}{median}; "
            f"`{report['command']}`",
            f"target: {report['target']}; server PostgreSQL {report['server_version']}",
            "",
            *table(report["steps"]),
            "",
            notes(report),
            *phase_table(report.get("phases", {}), report["steps"]),
        ]
    )


def phase_table(phases: dict, steps: dict) -> list[str]:
    """Where each Dagster run's time went (seconds per phase, from the run's own step records)."""
    if not phases:
        return []
    names = [n for n in PHASES if any(n in p for p in phases.values())]
    heads = ["phase (s)", *(steps[s]["label"] for s in phases)]
    rows = [[n, *(_fmt(p.get(n), ".2f") for p in phases.values())] for n in names]
    rows.append(["total (wall)", *(_fmt(steps[s].get("wall_s"), ".2f") for s in phases)])
    return ["", "Where the time goes:", "", *grid(heads, rows)]
