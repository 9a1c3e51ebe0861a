"""Research probes: the studies behind the product's choices (embedders, layers, read-out, refit).

Not part of the product: nothing in ``streammood`` imports this package. Run a probe from the
repository root as a module, e.g. ``.venv/bin/python -m research.probe_layers``; see README.md.
"""
