"""Helpers shared by the tests (and the benchmarks): synthetic media, the local Ray cluster, reference networks.

`media_fixtures` is a pytest plugin (loaded by `pytest_plugins` in tests/conftest.py): the session-wide clips.
"""
