"""Registers "late" into tests.helpers.registry_example.THINGS (its provider); counts its own imports."""
from tests.helpers.registry_example import THINGS

IMPORTS = globals().get("IMPORTS", 0) + 1
THINGS.register("late")(object)
