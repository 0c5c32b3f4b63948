"""Training recipes that are more than one training (registered in `avvp.train.config.RUNNERS`)."""
from avvp.train.recipes import ma  # noqa: F401  (registration)
