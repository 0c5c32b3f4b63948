"""Shared pytest configuration: the environment defaults, the media fixtures (a plugin,
`tests/helpers/media_fixtures.py`) and a one-thread fixture for tiny models.

The test session is a program like the console scripts: it applies the same environment defaults
(avvp._env: offline hub, loopback-only Ray) before anything imports transformers, laion_clap or ray
(huggingface_hub reads HF_HUB_OFFLINE when it is imported; a Ray imported without
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 maps 127.0.0.1 to the machine's address).
"""
from avvp._env import apply_defaults

apply_defaults()

import shutil  # noqa: E402

import pytest  # noqa: E402

pytest_plugins = ["tests.helpers.media_fixtures"]


def pytest_configure(config):
    # No silent skips: media fixtures need the ffmpeg binaries, so their absence is an error.
    missing = [b for b in ("ffmpeg", "ffprobe") if shutil.which(b) is None]
    if missing:
        raise pytest.UsageError(f"tests need {', '.join(missing)} on PATH (apt-get install ffmpeg)")


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny models run fastest on one thread; intra-op threads only contend on a loaded 2-core box.
    A module opts in with `pytestmark = pytest.mark.usefixtures("single_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
