"""SQL for the target, generated from the table specs: DDL, COPY, the merge, and the checks' queries."""
