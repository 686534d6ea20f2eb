"""How an op job records what it found on an external asset: a materialization with its metadata, and
its checks' evaluations, so that the asset's page shows the history as an asset job's would."""

from __future__ import annotations

from typing import TypeVar

import dagster as dg

T = TypeVar("T")


def recorded(context: dg.OpExecutionContext, spec: dg.AssetSpec, value: T, metadata: dict) -> T:
    """Log a materialization of `spec` with `metadata`; return `value` (the op's output)."""
    context.log_event(dg.AssetMaterialization(asset_key=spec.key, metadata=metadata, description=spec.description))
    return value


def checked(context: dg.OpExecutionContext, spec: dg.AssetSpec, results: list[dg.AssetCheckResult]) -> None:
    """Log each check result as an evaluation of the check of that name on `spec`."""
    for result in results:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=spec.key,
                check_name=result.check_name,
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
            )
        )
