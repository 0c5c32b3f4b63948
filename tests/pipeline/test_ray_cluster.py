"""`avvp-extract --address` against a real multi-node Ray cluster: a head and a worker node started as
separate `ray start` processes on 127.0.0.1 (1 CPU each). The store equals the local executor's value
for value; a file that no node can read is a failure row naming the node; killing the worker node
mid-run leaves the run to finish on the head with every video written once."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.media import make_clip
from tests.helpers.raycluster import BIN, ROOT, RayNode

from avvp.data.store import Store  # noqa: E402

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow
EXTRACT = [str(BIN / "avvp-extract")] if (BIN / "avvp-extract").exists() else [sys.executable, "-m", "avvp.cli.extract"]
ARGS = ["--backbone", "vggish", "--weights", "random", "--device", "cpu", "--batch-size", "1", "--no-progress",
        "--profile", "clean"]  # clips under 10 s are padded (the reference profile rejects them, as the AVVP scripts)


def extract(videos: Path, out: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
               OMP_NUM_THREADS="1")  # one torch thread, as each actor of a joined cluster with 1 CPU per actor
    return subprocess.run([*EXTRACT, "--videos", str(videos), "--out", str(out), *ARGS, *extra],
                          capture_output=True, text=True, env=env, timeout=timeout)


def contents(path):
    with Store(path) as s:
        ids = list(s.ids)
        order = np.argsort(s.ids)
        return (ids, {a: s.read(a)[order] for a in s.arrays() if a.startswith("features/")},
                sorted((f.id, f.stage, f.message) for f in s.failures()))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("clustervids")
    for i in range(4):
        make_clip(root / f"clip{i}.mp4", seconds=(10, 4, 6, 3)[i], audio=i != 1, size=(64, 48))
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


@pytest.fixture(scope="module")
def local_store(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("clusterlocal") / "local.h5"
    r = extract(videos, out, "--executor", "local")
    assert r.returncode == 3, r.stderr  # 3: the broken file is a failure row
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("raylogs")
    head = RayNode.head(logs)
    worker = None
    try:
        worker = RayNode.worker(head, logs)
        yield head, worker
    finally:
        for node in (worker, head):
            if node is not None:
                node.stop()
        shutil.rmtree(head.temp_dir, ignore_errors=True)


def test_joined_cluster_equals_local_executor(videos, local_store, cluster, tmp_path):
    head, worker = cluster
    out = tmp_path / "cluster.h5"
    r = extract(videos, out, "--executor", "ray", "--address", head.address, "--num-workers", "2")
    assert r.returncode == 3, r.stderr
    assert "4 done, 1 failed" in r.stderr
    ids_l, feats_l, fails_l = contents(local_store)
    ids_r, feats_r, fails_r = contents(out)
    assert sorted(ids_r) == sorted(ids_l) == [f"clip{i}" for i in range(4)]
    assert [(i, s) for i, s, _ in fails_r] == [(i, s) for i, s, _ in fails_l] == [("broken", "decode")]
    assert feats_l.keys() == feats_r.keys() == {"features/vggish"}
    np.testing.assert_array_equal(feats_l["features/vggish"], feats_r["features/vggish"])  # value for value


@pytest.mark.timeout(180)
def test_a_file_missing_on_the_nodes_is_a_failure_row_naming_the_node(videos, cluster, tmp_path):
    from avvp.pipeline.core import ExtractionConfig
    from avvp.pipeline.executors import ExecutorOptions
    from avvp.pipeline.jobs import discover_folder
    from avvp.pipeline.ray_executor import init_ray, run_ray

    head, _ = cluster
    folder = tmp_path / "vids"
    folder.mkdir()
    for name in ("clip1.mp4", "clip3.mp4"):
        shutil.copy(videos / name, folder / name)
    jobs = discover_folder(folder)
    (folder / "clip3.mp4").unlink()  # gone after the driver's discovery: no node can read it
    cfg = ExtractionConfig(backbones=("vggish",), weights="random", device="cpu", batch_videos=1)
    init_ray(ExecutorOptions(address=head.address))
    try:
        summary = run_ray(jobs, cfg, str(tmp_path / "missing.h5"), ExecutorOptions(address=head.address, progress=False))
    finally:
        ray.shutdown()
    assert (summary.done, summary.failed) == (1, 1)
    ids, _, failures = contents(tmp_path / "missing.h5")
    assert ids == ["clip1"]
    [(vid, stage, message)] = failures
    assert (vid, stage) == ("clip3", "decode")
    assert f"file not found on node {socket.gethostname()} 127.0.0.1 node " in message
    assert str(folder / "clip3.mp4") in message and "same path" in message


def _busy(node: RayNode) -> bool:
    """A decode task or a backbone actor of the run is alive on this node."""
    for pid in node.pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"ray::") and (b"_timed_decode" in cmd or b"BackboneWorker" in cmd):
            return True
    return False


def test_worker_node_killed_mid_run_the_run_finishes_on_the_head(videos, local_store, cluster, tmp_path):
    # must run last in this module: it kills the cluster's worker node
    head, worker = cluster
    out = tmp_path / "killed.h5"
    killed = threading.Event()
    running = threading.Event()
    running.set()

    def assassin():
        deadline = time.time() + 200
        while running.is_set() and time.time() < deadline:
            if _busy(worker):
                worker.kill()
                killed.set()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=assassin, daemon=True)
    thread.start()
    # one actor reserving no CPU: after the loss the head's single CPU still runs the decode tasks
    # (with an actor holding the head's only CPU, decode tasks would wait for a node to come back)
    r = extract(videos, out, "--executor", "ray", "--address", head.address, "--num-workers", "1",
                "--cpus-per-worker", "0")
    running.clear()
    thread.join(timeout=5)
    assert killed.is_set(), f"the worker node never ran part of the job\n{r.stderr[-2000:]}"
    assert worker.proc.poll() is not None and not worker.pids()  # the node is gone, its processes too
    assert r.returncode == 3, r.stderr
    ids, feats, failures = contents(out)
    assert sorted(ids) == [f"clip{i}" for i in range(4)] and len(ids) == len(set(ids))  # every video once
    assert [(i, s) for i, s, _ in failures] == [("broken", "decode")]  # no 'worker' row: Ray retried
    np.testing.assert_array_equal(feats["features/vggish"], contents(local_store)[1]["features/vggish"])
