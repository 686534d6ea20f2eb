"""The jobs beside the migration (preflight, rollback export): op jobs that record what they find on
external assets, so that "Materialize all" launches the migration and nothing else."""
