"""A killed extraction resumes where its journal ends; every file under --videos is accounted for."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.helpers.media import make_clip

from avvp.cli.extract import main  # noqa: E402
from avvp.data.store import Store, StoreWriter, VideoRecord, recover_journal  # noqa: E402
from avvp.pipeline.jobs import AUDIO_ONLY_MESSAGE, scan_folder  # noqa: E402

ARGS = ["--backbone", "vggish", "--weights", "random", "--executor", "local", "--no-progress", "--profile", "clean"]
SUMMARY = re.compile(r"(\d+) done, (\d+) failed, (\d+) already in the store (?:\((\d+) rows recovered[^)]*\) )?\(of (\d+)\)")


def summary_counts(text: str) -> dict[str, int]:
    m = SUMMARY.search(text)
    assert m, text
    done, failed, present, recovered, total = (int(g or 0) for g in m.groups())
    return {"done": done, "failed": failed, "present": present, "recovered": recovered, "total": total}


def test_every_file_is_a_row_a_failure_row_or_skipped(tmp_path, capsys):
    videos = tmp_path / "videos"
    make_clip(videos / "clip.mp4", seconds=3)
    for name in ("song.m4a", "sub/voice.mp3", "take.wav"):
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).write_bytes(b"not decoded: the extension says there is no video stream")
    (videos / "notes.txt").write_text("x")
    (videos / "cover.jpg").write_bytes(b"\xff\xd8")
    (videos / "README").write_text("x")
    scan = scan_folder(videos)
    assert [j.id for j in scan.jobs] == ["clip"]
    assert sorted(f.id for f in scan.failures) == ["song", "sub/voice", "take"]
    assert scan.skipped.total == 3 and scan.skipped.by_extension == {".txt": 1, ".jpg": 1, "(none)": 1}

    out = tmp_path / "data.h5"
    rc = main(["--videos", str(videos), "--out", str(out), *ARGS])
    err = capsys.readouterr().err
    assert rc == 3  # audio-only files are failures: a row is a video
    with Store(out) as s:
        assert list(s.ids) == ["clip"]
        failures = {f.id: f for f in s.failures()}
    assert set(failures) == {"song", "sub/voice", "take"}
    assert all(f.stage == "decode" and f.message.startswith(AUDIO_ONLY_MESSAGE) for f in failures.values())
    line = next(ln for ln in err.splitlines() if "skipped 3 file(s)" in ln)
    assert "1 .jpg" in line and "1 .txt" in line and "1 (none)" in line and "notes.txt" in line


def test_shards_flush_by_count_or_by_time(tmp_path):
    def shards(path):
        return sorted(Path(str(path) + ".journal").glob("*.h5"))

    row = {"features/x": np.ones((2, 3), np.float32)}
    attrs = {"features/x": {"backbone": "x"}}
    w = StoreWriter(tmp_path / "a.h5", flush_every=1000, flush_seconds=3600)
    w.add_video(VideoRecord("v1"), row, attrs)
    assert shards(tmp_path / "a.h5") == []  # neither 1000 videos nor an hour
    w.flush_seconds = 0.0
    w.add_video(VideoRecord("v2"), row, attrs)
    assert len(shards(tmp_path / "a.h5")) == 1  # the time bound alone flushed
    w.close()
    w = StoreWriter(tmp_path / "b.h5", flush_every=2, flush_seconds=3600)
    w.add_video(VideoRecord("v1"), row, attrs)
    w.add_video(VideoRecord("v2"), row, attrs)
    assert len(shards(tmp_path / "b.h5")) == 1  # the count bound alone flushed
    w.close()


def test_recover_journal_counts_the_rows_it_brings_back(tmp_path):
    out = tmp_path / "data.h5"
    w = StoreWriter(out, flush_every=1)
    for vid in ("a", "b", "c"):
        w.add_video(VideoRecord(vid), {"features/x": np.zeros((2, 3), np.float32)}, {"features/x": {"backbone": "x"}})
    # simulate a kill: the lock goes with the process, the shards stay, nothing is committed
    import fcntl

    fcntl.flock(w._lock_file, fcntl.LOCK_UN)
    w._lock_file.close()
    assert not out.exists() and len(list(Path(str(out) + ".journal").glob("*.h5"))) == 3
    assert recover_journal(out) == 3
    with Store(out) as s:
        assert sorted(s.ids) == ["a", "b", "c"]
    assert recover_journal(out) == 0  # nothing left to recover


@pytest.mark.slow
def test_killed_extract_recomputes_only_the_rest(tmp_path):
    videos = tmp_path / "videos"
    n = 12
    for i in range(n):
        make_clip(videos / f"clip{i:02d}.mp4", seconds=3, audio_pattern="noise" if i % 2 else "sine")
    out = tmp_path / "data.h5"
    journal = Path(str(out) + ".journal")
    cmd = [sys.executable, "-m", "avvp.cli.extract", "--videos", str(videos), "--out", str(out), *ARGS,
           "--batch-size", "1", "--flush-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(journal.glob("*.h5"))) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing committed: only the journal holds the work
    journaled = set()
    for shard in journal.glob("*.h5"):
        with h5py.File(shard, "r") as f:
            if "videos/id" in f:
                journaled.update(x.decode() if isinstance(x, bytes) else x for x in f["videos/id"][()])
    assert 3 <= len(journaled) < n

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    counts = summary_counts(r.stderr)
    assert r.returncode == 0, r.stderr
    assert counts["recovered"] == len(journaled)
    assert counts["present"] == len(journaled) and counts["done"] == n - len(journaled)  # only the rest computed
    with Store(out) as s:
        assert sorted(s.ids) == sorted(f"clip{i:02d}" for i in range(n))  # each once
        assert s.mask("features/vggish").all()
