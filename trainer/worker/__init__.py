"""The bridge between the registry and the ML side: the only part of `trainer` that imports `registry`.

It runs the work a job describes (port, evaluate, train…) against the registry's rows and blobs.
"""
