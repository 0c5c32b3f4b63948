"""Console scripts: one module per command, each a thin wrapper over the Python API."""
