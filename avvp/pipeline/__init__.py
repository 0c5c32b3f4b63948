"""Extraction over videos: jobs (discovery), the executor core (decode → backbones → store sink), the
executors (local loop, Ray) and the Python API `avvp.pipeline.extract(video_path, backbones)` (api.py)."""

__all__ = ["ExtractionError", "dump_network_inputs", "extract"]


def __getattr__(name: str):
    # the API pulls in the executor core and the backbones; importing avvp.pipeline.jobs alone stays light
    if name in __all__:
        from avvp.pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'avvp.pipeline' has no attribute {name!r}")
