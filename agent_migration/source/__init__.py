"""Reading the source: the run's snapshot, its chunks and key facts, and a re-sync's changes."""
