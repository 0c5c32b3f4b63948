"""The Ray executor on a local 2-CPU Ray: same store as the local executor, value for value, and a
store that ends complete when a backbone worker process is killed mid-run."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.media import make_clip

from avvp.data.store import Store  # noqa: E402
from avvp.pipeline.core import ExtractionConfig  # noqa: E402
from avvp.pipeline.executors import ExecutorOptions  # noqa: E402
from avvp.pipeline.jobs import discover_folder  # noqa: E402
from avvp.pipeline.local import run_local  # noqa: E402

ray = pytest.importorskip("ray")
from avvp.pipeline.ray_executor import init_ray, run_ray  # noqa: E402

# clean profile: the 4 s clip is padded to a window (the reference profile rejects it for VGGish, as the
# official scripts do: tests/extract/test_profiles.py); executors must agree whatever the profile
CFG = ExtractionConfig(backbones=("vggish", "r2plus1d"), weights="random", device="cpu", batch_videos=1,
                       profile="clean")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("rayvids")
    for i in range(3):
        make_clip(root / f"clip{i}.mp4", seconds=10 if i != 2 else 4, audio=i != 1, size=(96, 72))
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


@pytest.fixture(scope="module")
def ray_session():
    init_ray(ExecutorOptions(object_store_mb=256))
    yield ray
    ray.shutdown()


def _contents(path):
    with Store(path) as s:
        order = np.argsort(s.ids)
        return (
            list(s.ids[order]),
            {a: s.read(a)[order] for a in s.arrays() if a.startswith("features/")},
            sorted((f.id, f.stage) for f in s.failures()),
            s.video_field("has_audio")[order].tolist(),
        )


def test_embedded_ray_is_loopback_only(ray_session):
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert ray_session.util.get_node_ip_address() == "127.0.0.1"


@pytest.fixture(scope="module")
def local_store(videos, tmp_path_factory):
    local = tmp_path_factory.mktemp("local") / "local.h5"
    run_local(discover_folder(videos), CFG, str(local), progress=False)
    return local


def test_ray_store_equals_local_store(videos, ray_session, local_store, tmp_path):
    jobs = discover_folder(videos)
    remote = tmp_path / "ray.h5"
    # two CPU actors on a 2-CPU Ray: their reservation must leave a CPU for the decode tasks (no hang)
    summary = run_ray(jobs, CFG, str(remote), ExecutorOptions(num_workers=2, progress=False))
    assert (summary.done, summary.failed) == (3, 1)
    ids_l, feats_l, fails_l, audio_l = _contents(local_store)
    ids_r, feats_r, fails_r, audio_r = _contents(remote)
    assert ids_l == ids_r and fails_l == fails_r == [("broken", "decode")] and audio_l == audio_r
    assert feats_l.keys() == feats_r.keys() == {"features/vggish", "features/r2plus1d"}
    for name in feats_l:  # value for value
        np.testing.assert_array_equal(feats_l[name], feats_r[name])


def _worker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ray::BackboneWorker" in cmd:
                pids.append(int(entry.name))
    return pids


def test_killed_worker_is_retried_and_the_store_ends_complete(videos, ray_session, local_store, tmp_path):
    jobs = discover_folder(videos)
    killed: list[int] = []

    def assassin():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for pid in _worker_pids():
                # wait until the actor is busy with a batch, then kill its process
                title = (Path("/proc") / str(pid) / "cmdline").read_bytes()
                if b".run" in title:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
            time.sleep(0.05)

    thread = threading.Thread(target=assassin, daemon=True)
    thread.start()
    out = tmp_path / "killed.h5"
    summary = run_ray(jobs, CFG, str(out), ExecutorOptions(num_workers=1, progress=False))
    thread.join(timeout=5)
    assert killed, "the test never caught a worker mid-batch"
    ids, feats, failures, _ = _contents(out)
    assert ids == sorted(j.id for j in jobs if j.id != "broken")  # every video written exactly once
    assert failures == [("broken", "decode")]  # no 'worker' failure: the batch was retried
    assert summary.done == 3
    reference = _contents(local_store)[1]
    for name in reference:
        np.testing.assert_array_equal(feats[name], reference[name])


def test_actor_reservation_leaves_a_cpu_for_decoding():
    from avvp.pipeline.ray_executor import _actor_cpus

    assert _actor_cpus(1.0, 1, 2.0, on_gpu=False) == 1.0
    assert _actor_cpus(1.0, 2, 2.0, on_gpu=False) == 0.0  # was a hang: 2 actors took both CPUs
    # (0.5 each was a hang too on two 1-CPU nodes: half a CPU left per node, tests/pipeline/test_ray_cluster.py)
    assert _actor_cpus(1.0, 4, 16.0, on_gpu=False) == 1.0
    assert _actor_cpus(1.0, 8, 1.0, on_gpu=False) == 0.0
    assert _actor_cpus(1.0, 2, 2.0, on_gpu=True) == 1.0  # GPU actors: the GPU is the bound resource


def test_label_text_arrays_come_from_a_worker_and_equal_local(videos, ray_session, tmp_path):
    # clip writes /text/clip once per dataset: under Ray a worker computes it (the driver builds no model)
    cfg = ExtractionConfig(backbones=("clip",), weights="random", device="cpu", batch_videos=2,
                           backbone_options=(("clip", (("model", "ViT-B-32"),)),))
    jobs = [j for j in discover_folder(videos) if j.id == "clip0"]
    run_local(jobs, cfg, str(tmp_path / "local.h5"), progress=False)
    run_ray(jobs, cfg, str(tmp_path / "ray.h5"), ExecutorOptions(num_workers=1, progress=False))
    with Store(tmp_path / "local.h5") as a, Store(tmp_path / "ray.h5") as b:
        np.testing.assert_array_equal(a.read("text/clip"), b.read("text/clip"))
        np.testing.assert_array_equal(a.read("features/clip"), b.read("features/clip"))
        attrs_a, attrs_b = a.attrs("text/clip"), b.attrs("text/clip")
        assert attrs_a.keys() == attrs_b.keys()
        for key in attrs_a:
            np.testing.assert_array_equal(attrs_a[key], attrs_b[key])
