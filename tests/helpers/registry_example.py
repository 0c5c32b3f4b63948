"""A registry whose second entry lives in another module (`registry_example_provider`), for
tests/test_registry.py: the provider must be imported by the first lookup, once."""
from avvp.registry import Registry

THINGS: Registry[type] = Registry("thing", providers=("tests.helpers.registry_example_provider",))
THINGS.register("early")(int)
