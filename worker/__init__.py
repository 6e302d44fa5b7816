"""The bridge between the registry and the ML side: the only package that imports both.

A job handler asks a registry service for a plan (plain data, no ORM rows), measures or trains with
the trainer (no database), and hands the result back to a registry service, recording the job's
completion in the same transaction.
"""
