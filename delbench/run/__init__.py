"""The run: a protocol's cells planned, each stage in its own module, rows recorded."""
