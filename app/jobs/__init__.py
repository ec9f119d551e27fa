"""The one durable job mechanism that weights jobs and tasks share (see queue.py)."""
