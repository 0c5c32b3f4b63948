"""The demo (`make demo`, `python -m avvp.demo`): the last stage before the CLI; it calls the library
functions behind every command (extraction, training, parsing, pseudo-labels, metrics) and never the CLI.
`clips` generates planted-event videos, `planted` standardises/folds features and scores parsed timelines,
`run` runs and prints the steps."""
