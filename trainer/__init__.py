"""patchreg's ML side: patch tensors, methods, regularisers, training loop, evaluation, gate, porting maths.

It never imports sqlalchemy or `registry`; the `worker` package bridges the two.
"""
