"""`python -m agent_migration.sample`: the same command as `agent-migration-sample`."""

import sys

from agent_migration.sample.cli import main

sys.exit(main())
