"""LLP metadata, the HDF5 store, prediction files and synthetic data."""
