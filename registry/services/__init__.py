"""Services: functions that take a session, do one thing, and never commit.

The entry point (CLI command, HTTP request, worker job) owns the transaction via
`registry.db.transaction(factory, actor)`, which also names the acting identity for the audit log.
"""
