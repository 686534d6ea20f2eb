"""Dagster assets, one module per stage of the flow: extract -> transform -> load -> verify."""
