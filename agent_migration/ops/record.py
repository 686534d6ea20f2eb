"""How an op job records what it found on an external asset: a materialization with its metadata, and
its checks' evaluations, so that the asset's page shows the history as an asset job's would.

An op that may fail after recording yields these events instead of logging them: events logged with
`context.log_event` are dropped when the op then fails."""

from __future__ import annotations

from typing import TypeVar

import dagster as dg

T = TypeVar("T")


def materialization(spec: dg.AssetSpec, metadata: dict) -> dg.AssetMaterialization:
    return dg.AssetMaterialization(asset_key=spec.key, metadata=metadata, description=spec.description)


def evaluations(spec: dg.AssetSpec, results: list[dg.AssetCheckResult]) -> list[dg.AssetCheckEvaluation]:
    """Each check result as an evaluation of the check of that name on `spec`."""
    return [
        dg.AssetCheckEvaluation(
            asset_key=spec.key,
            check_name=r.check_name,
            passed=r.passed,
            metadata=r.metadata,
            severity=r.severity,
            description=r.description,
        )
        for r in results
    ]


def recorded(context: dg.OpExecutionContext, spec: dg.AssetSpec, value: T, metadata: dict) -> T:
    """Log a materialization of `spec` with `metadata`; return `value` (the op's output)."""
    context.log_event(materialization(spec, metadata))
    return value


def checked(context: dg.OpExecutionContext, spec: dg.AssetSpec, results: list[dg.AssetCheckResult]) -> None:
    for event in evaluations(spec, results):
        context.log_event(event)
