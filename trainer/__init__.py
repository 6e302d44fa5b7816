"""patchreg's ML side: patch format, methods, training loop, evaluation, porting.

The core never imports sqlalchemy or `registry`; only `trainer/worker.py` bridges the two.
"""
