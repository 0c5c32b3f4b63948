"""The test suite as a package: `tests.helpers` holds the shared helpers, imported as `from tests.helpers import media`."""
