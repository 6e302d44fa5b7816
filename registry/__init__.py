"""patchreg's data side: models, services, artifact store, fingerprints, HTTP API.

The core never imports torch, transformers, fastapi or click; `registry.api` may import fastapi.
"""
