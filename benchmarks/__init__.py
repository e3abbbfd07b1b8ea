"""Load harness for attesto-asgi: the token endpoint beside its peers and the floor.

``python -m benchmarks`` runs the whole suite (see ``benchmarks/README.md``).
"""
