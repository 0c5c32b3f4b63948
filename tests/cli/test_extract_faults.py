"""avvp-extract's faults end in one line and a documented exit code (avvp/faults.py), and a re-run
completes with every video exactly once: a real SIGINT/SIGTERM to a running command, a disk that fills up
while journaling or merging (a small tmpfs where this machine lets us mount one, else a shard writer that
fails with ENOSPC on its Nth write), a store another writer holds, an unreadable store, no cluster."""
from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.media import make_clip
from tests.helpers.signals import SIGNAL_NAMES, child_env, interrupt_when

import avvp.data.store as store_module  # noqa: E402
from avvp import faults  # noqa: E402
from avvp.cli.extract import main  # noqa: E402
from avvp.data.store import Store, StoreWriter, saved_videos  # noqa: E402

ARGS = ["--backbone", "vggish", "--weights", "random", "--executor", "local", "--no-progress", "--profile", "clean",
        "--batch-size", "1", "--flush-every", "1"]
SUMMARY = re.compile(r"(\d+) done, (\d+) failed, (\d+) already in the store")
NUM_VIDEOS = 4


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    make_clip(root / "clip00.mp4", seconds=1, size=(64, 48))
    for i in range(1, NUM_VIDEOS):  # copies: the test is about bookkeeping, not content
        shutil.copy(root / "clip00.mp4", root / f"clip{i:02d}.mp4")
    return root


def command(videos: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "avvp.cli.extract", "--videos", str(videos), "--out", str(out), *ARGS]


def assert_complete(out: Path) -> None:
    with Store(out) as s:
        ids = list(s.ids)
        assert sorted(ids) == [f"clip{i:02d}" for i in range(NUM_VIDEOS)]  # every video, each once
        assert s.mask("features/vggish").all() and not s.failures()
    assert not Path(str(out) + ".journal").exists()


def rerun(videos: Path, out: Path, expect_present: int) -> None:
    """The same command again (in this process: the interrupted run was the real process)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["--videos", str(videos), "--out", str(out), *ARGS])
    assert rc == faults.EXIT_OK, err.getvalue()[-3000:]
    done, failed, present = map(int, SUMMARY.search(err.getvalue()).groups())
    assert present == expect_present and done == NUM_VIDEOS - expect_present and failed == 0, err.getvalue()
    assert_complete(out)


# SIGTERM takes the same path as SIGINT (one handler), except that an embedded Ray head installs its own
# SIGTERM handler (put back by the executor): the slow tier runs SIGTERM and the Ray executor
@pytest.mark.parametrize("sig,executor", [
    (signal.SIGINT, "local"),
    pytest.param(signal.SIGTERM, "local", marks=pytest.mark.slow),
    pytest.param(signal.SIGTERM, "ray", marks=pytest.mark.slow),
    pytest.param(signal.SIGINT, "ray", marks=pytest.mark.slow),
], ids=["SIGINT-local", "SIGTERM-local", "SIGTERM-ray", "SIGINT-ray"])
def test_a_signal_saves_what_is_computed_says_so_and_a_rerun_completes(videos, tmp_path, sig, executor):
    out = tmp_path / "data.h5"
    journal = Path(str(out) + ".journal")
    cmd = command(videos, out)
    cmd[cmd.index("--executor") + 1] = executor
    last, stop_seconds = interrupt_when(cmd, lambda: bool(list(journal.glob("*.h5"))), sig)
    m = re.fullmatch(rf"avvp-extract: interrupted by {SIGNAL_NAMES[sig]}; (\d+) videos are saved in {re.escape(str(out))}; "
                     r"re-run the same command to continue", last)
    assert m, last
    saved = int(m.group(1))
    assert saved_videos(out) == (saved, 0)  # committed: the line counts what is on disk, merged
    assert 1 <= saved < NUM_VIDEOS and stop_seconds < 60
    rerun(videos, out, expect_present=saved)


def _enospc_on_write(monkeypatch, target: str, after: int) -> list[int]:
    """`store_module.<target>` raises ENOSPC from its (after+1)-th call on, as a full disk does."""
    real = getattr(store_module, target)
    calls = [0]

    def writer(*args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, target, writer)
    return calls


def test_disk_full_while_journaling_is_one_line_exit_4_and_a_rerun_completes(videos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "data.h5"
    _enospc_on_write(monkeypatch, "_write_shard", after=2)  # the third shard finds the disk full
    rc = main(["--videos", str(videos), "--out", str(out), *ARGS])
    err = capsys.readouterr().err
    assert rc == faults.EXIT_NO_SPACE == 4
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"avvp-extract: no space left on device writing {re.escape(str(out))}\.journal/\S+\.tmp; "
                        rf"2 videos are saved \(0 in data\.h5, 2 in its journal data\.h5\.journal, merged by the next "
                        r"run\); free space and re-run the same command to continue", last), last
    assert "Traceback" not in err
    assert saved_videos(out) == (0, 2) and not list(Path(str(out) + ".journal").glob("*.tmp"))
    monkeypatch.undo()
    rerun(videos, out, expect_present=2)


def test_disk_full_while_merging_keeps_the_journal_and_a_rerun_completes(videos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "data.h5"
    _enospc_on_write(monkeypatch, "_merge_into", after=0)  # the journal is complete, the merged copy is not
    rc = main(["--videos", str(videos), "--out", str(out), *ARGS])
    err = capsys.readouterr().err
    assert rc == faults.EXIT_NO_SPACE
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"avvp-extract: no space left on device writing {re.escape(str(out))}\.tmp; {NUM_VIDEOS} videos "
                        r"are saved \(0 in data\.h5, \d+ in its journal .*\); free space and re-run the same command "
                        r"to continue", last), last
    journal = Path(str(out) + ".journal")
    assert not (journal / "rejected").exists()  # a full disk is not a bad shard: nothing is set aside
    assert not Path(str(out) + ".tmp").exists()  # the partial copy does not keep the disk full
    monkeypatch.undo()
    rerun(videos, out, expect_present=NUM_VIDEOS)


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_disk_full_on_a_real_small_tmpfs(videos, tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "160k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-ENOSPC tests cover the logic")
    try:
        out = disk / "data.h5"
        r = subprocess.run(command(videos, out), capture_output=True, text=True, timeout=600, env=child_env())
        assert r.returncode == faults.EXIT_NO_SPACE, r.stderr[-3000:]
        assert "Traceback" not in r.stderr
        last = r.stderr.strip().splitlines()[-1]
        m = re.fullmatch(rf"avvp-extract: no space left on device writing {re.escape(str(out))}\S*( \(merging .*\))?; "
                         r"(\d+) videos are saved .*; free space and re-run the same command to continue", last)
        assert m, last
        saved = sum(saved_videos(out))
        assert int(m.group(2)) == saved
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # "free space"
        rerun(videos, out, expect_present=saved)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_store_held_by_another_writer_is_one_line(videos, tmp_path, capsys):
    out = tmp_path / "data.h5"
    with StoreWriter(out):
        rc = main(["--videos", str(videos), "--out", str(out), *ARGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == faults.EXIT_USAGE
    assert err[-1] == f"avvp-extract: error: another process is writing {out} (lock {out}.lock is held)"


def test_an_unreadable_store_is_one_line(videos, tmp_path, capsys):
    out = tmp_path / "data.h5"
    out.write_bytes(b"this is not HDF5 " * 100)
    rc = main(["--videos", str(videos), "--out", str(out), *ARGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == faults.EXIT_USAGE
    assert err[-1].startswith(f"avvp-extract: error: cannot read store {out}: file signature not found "), err[-1]
    assert "Traceback" not in "\n".join(err)


def test_no_cluster_at_the_address_is_one_line_after_the_connect_timeout(videos, tmp_path, capsys):
    from tests.helpers.raycluster import free_port

    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    rc = main(["--videos", str(videos), "--out", str(tmp_path / "x.h5"), *ARGS[:4], "--executor", "ray",
               "--address", address, "--connect-timeout", "2", "--no-progress"])
    seconds = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == faults.EXIT_USAGE and seconds < 30
    assert any(ln.startswith(f"avvp-extract: waiting for the Ray cluster at {address}: the Ray GCS at {address} does "
                             "not accept connections") for ln in err), err
    assert err[-1] == (f"avvp-extract: error: no Ray cluster answered at {address} within 2 s (the Ray GCS at {address} "
                       "does not accept connections); start the cluster or check --address (--connect-timeout to "
                       "wait longer)")
