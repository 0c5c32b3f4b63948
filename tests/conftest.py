"""Shared pytest configuration: the environment defaults, two plugins (the media fixtures,
`tests/helpers/media_fixtures.py`; the test tiers and `--unit`, `tests/helpers/tiers.py`) and a one-thread
fixture for tiny models.

The test session is a program like the console scripts: it applies the same environment defaults
(avvp._env: offline hub, loopback-only Ray) before anything imports transformers, laion_clap or ray
(huggingface_hub reads HF_HUB_OFFLINE when it is imported; a Ray imported without
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 maps 127.0.0.1 to the machine's address).
"""
from avvp._env import apply_defaults

apply_defaults()

import pytest  # noqa: E402

# ffmpeg is needed only by the tests marked `ffmpeg` (tiers.py marks them; without it they error, not skip)
pytest_plugins = ["tests.helpers.media_fixtures", "tests.helpers.tiers"]


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny models run fastest on one thread; intra-op threads only contend on a loaded 2-core box.
    A module opts in with `pytestmark = pytest.mark.usefixtures("single_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
