"""`python -m agent_migration.benchmark`: see the package's docstring."""

import sys

from agent_migration.benchmark.cli import main

sys.exit(main())
