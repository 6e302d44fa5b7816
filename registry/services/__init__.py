"""Services: functions that take a session, do one thing, and never commit.

The entry point (CLI command, HTTP request, worker job) owns the transaction via
`registry.db.transaction`, which also sets the acting identity in `session.info["actor"]`.
"""
