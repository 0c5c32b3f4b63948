"""avvp-download against a loopback server (127.0.0.1) standing in for YouTube: the Done-when run (40 ids,
5 broken sources, a kill at half time, a resume that fetches only what is missing), the trim against the
official ffmpeg command, signals, bad input and the reason classes of YouTube's messages."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avvp.acquire.download import (
    DownloadConfig, classify_error, download_clips, official_trim_args, parse_clip_row, read_requests,
)
from avvp.acquire.manifest import MANIFEST_NAME, WORK_DIR_NAME, read_manifest
from tests.helpers.loopback import LoopbackVideos
from tests.helpers.media import FFMPEG, make_clip

pytest.importorskip("yt_dlp")

BROKEN = {"404": ("unavailable", "removed"), "451": ("unavailable", "geo-blocked"), "truncated": ("failed", "ffmpeg"),
          "cut": ("failed", "network"), "stall": ("failed", "network")}
FAST = ["--retries", "1", "--backoff", "0.05", "--socket-timeout", "1", "--no-progress"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Two tiny 12 s sources (64x48, 10 fps, sine audio), as bytes."""
    d = tmp_path_factory.mktemp("sources")
    return [make_clip(d / f"s{i}.mp4", seconds=12, fps=10, size=(64, 48), pattern=p).read_bytes()
            for i, p in enumerate(("testsrc", "smptebars"))]


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("filename\tevent_labels\n" + "".join(f"{r}\tSpeech\n" for r in rows))
    return path


def _cli(csv: Path, out: Path, server: LoopbackVideos, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "avvp.cli.download", "--csv", str(csv), "--out", str(out),
           "--url-template", server.url_template, *FAST, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _decoded(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every frame (rgb24) and every sample (f32le, as stored) of a file."""
    video = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
                            "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    audio = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-"],
                           capture_output=True, check=True).stdout
    return np.frombuffer(video, np.uint8), np.frombuffer(audio, np.float32)


@pytest.mark.slow  # ~25 s on 2 cores: 75 yt-dlp + ffmpeg runs, each mostly process start-up
def test_forty_ids_five_broken_kill_at_half_time_and_resume(tmp_path, sources):
    ids = [f"clip{i:07d}" for i in range(40)]
    cases = dict(zip(ids[3::8], BROKEN))  # spread over the run: ids 3, 11, 19, 27, 35
    server = LoopbackVideos(files={y: sources[i % 2] for i, y in enumerate(ids)}, cases=cases, stall_seconds=3,
                            chunk_delay=0.05)
    try:
        csv = _csv(tmp_path / "llp.csv", [f"{y}_{1 + i % 2}_{11 + i % 2}" for i, y in enumerate(ids)])
        out = tmp_path / "clips"
        t0 = time.monotonic()
        first = _cli(csv, out, server, "--workers", "3")
        manifest = out / MANIFEST_NAME
        while first.poll() is None and (not manifest.exists() or len(manifest.read_text().splitlines()) < 20):
            time.sleep(0.05)
        first.kill()  # SIGKILL: no handler runs, the manifest must be whole anyway
        first.wait()
        killed_after = time.monotonic() - t0
        after_kill = read_manifest(manifest)
        assert 20 <= len(after_kill) < 40, len(after_kill)
        ok_before = {r.ytid for r in after_kill.values() if r.status == "ok"}
        assert all((out / f"{y}.mp4").is_file() for y in ok_before)

        server.reset_log()
        t1 = time.monotonic()
        second = _cli(csv, out, server, "--workers", "3")
        _, err = second.communicate(timeout=120)
        resume_seconds = time.monotonic() - t1
        assert second.returncode == 3, err
        # the resume fetched exactly the ids without an ok line after the kill
        assert server.fetched() == set(ids) - ok_before
        records = read_manifest(manifest)
        assert len(manifest.read_text().splitlines()) == 40  # a completed run leaves one line per id
        assert sorted(y for y in ids if records[f"{y}_{1 + ids.index(y) % 2}_{11 + ids.index(y) % 2}"].status == "ok") \
            == sorted(set(ids) - set(cases))
        for ytid, case in cases.items():
            (rec,) = [r for r in records.values() if r.ytid == ytid]
            assert (rec.status, rec.reason) == BROKEN[case], (case, rec)
            assert rec.message and not (out / f"{ytid}.mp4").exists()
        assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST_NAME] + [f"{y}.mp4" for y in ids if y not in cases])
        ok = [r for r in records.values() if r.status == "ok"]
        assert len(ok) == 35 and all(r.trim == "official" and r.duration == pytest.approx(10.0, abs=0.2) for r in ok)
        assert all(r.resolution == "64x48" and r.format_id and r.sha256 and r.bytes for r in ok)
        assert {tuple(sorted(r.tools)) for r in ok} == {("avvp", "ffmpeg", "yt-dlp")}
        assert "35 of 40 available" in err and "geo-blocked 1" in err and "network 2" in err
        print(f"\nkilled after {killed_after:.1f}s with {len(after_kill)} lines; resume {resume_seconds:.1f}s")

        # a third run has nothing left but the broken ones
        server.reset_log()
        summary = download_clips(read_requests(csv)[0], out, DownloadConfig(
            url_template=server.url_template, retries=0, socket_timeout=1), progress=False, echo=lambda _l: None)
        assert server.fetched() == set(cases) and summary.already == 35 and summary.missing == 5
    finally:
        server.close()


def test_trim_equals_the_official_ffmpeg_command(tmp_path, sources):
    source = tmp_path / "full.mp4"
    source.write_bytes(sources[1])
    server = LoopbackVideos(files={"abcdefghijk": sources[1]})
    try:
        summary = download_clips([parse_clip_row("abcdefghijk_1.5_11.5")], tmp_path / "out",
                                 DownloadConfig(url_template=server.url_template, workers=1), progress=False)
    finally:
        server.close()
    assert summary.new == 1
    # the official script's command, literally (os.system in AVVP/VALOR's download_dataset.py)
    official = tmp_path / "abcdefghijk.mp4"
    subprocess.run(official_trim_args("ffmpeg", str(source), 1.5, str(official)), check=True)
    assert official_trim_args("ffmpeg", "f", 1.5, "o")[1:7] == ["-ss", "1.5", "-i", "f", "-t", "10.0"]
    ours_v, ours_a = _decoded(tmp_path / "out" / "abcdefghijk.mp4")
    ref_v, ref_a = _decoded(official)
    assert ours_v.size == 100 * 64 * 48 * 3 and ours_a.size > 0
    np.testing.assert_array_equal(ours_v, ref_v)
    np.testing.assert_array_equal(ours_a, ref_a)
    assert not (tmp_path / "out" / WORK_DIR_NAME).exists()  # no full video left behind


def test_range_trim_is_recorded_as_such(tmp_path, sources):
    server = LoopbackVideos(files={"abcdefghijk": sources[0]})
    try:
        download_clips([parse_clip_row("abcdefghijk_2_12")], tmp_path, DownloadConfig(
            url_template=server.url_template, workers=1, trim="range"), progress=False)
    finally:
        server.close()
    (rec,) = read_manifest(tmp_path / MANIFEST_NAME).values()
    assert (rec.status, rec.trim, rec.duration) == ("ok", "range", pytest.approx(10.0, abs=0.2))


def test_sigterm_flushes_the_manifest_and_says_how_to_continue(tmp_path, sources):
    ids = [f"slow{i:07d}" for i in range(6)]
    server = LoopbackVideos(files={y: sources[0] for y in ids}, chunk_delay=0.3)
    try:
        proc = _cli(_csv(tmp_path / "c.csv", [f"{y}_0_10" for y in ids]), tmp_path / "o", server, "--workers", "1")
        manifest = tmp_path / "o" / MANIFEST_NAME
        while proc.poll() is None and not (manifest.exists() and manifest.read_text()):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        server.close()
    assert proc.returncode == 143, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and "run the same command again" in lines[0]
    saved = [r for r in read_manifest(manifest).values() if r.status == "ok"]
    assert 1 <= len(saved) < 6 and f"{len(saved)} of 6 clips saved" in lines[0]
    assert not list((tmp_path / "o").glob(f"{WORK_DIR_NAME}/*.full.*"))  # the abandoned full video is gone


def test_bad_input_is_one_line(tmp_path, capsys):
    from avvp.cli.download import main

    csv = _csv(tmp_path / "c.csv", ["abcdefghijk_0_10", "short_0_10", "abcdefghijk_5_15", "abcdefgh!jk_0_10"])
    requests, invalid = read_requests(csv)
    assert [r.id for r in requests] == ["abcdefghijk_0_10"]
    assert [i.line for i in invalid] == [3, 4, 5] and "repeats an earlier row" in invalid[1].message
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--csv", str(csv), "--out", str(blocker / "sub"), "--no-progress"]) == 2
    assert main(["--csv", str(tmp_path / "none.csv"), "--out", str(tmp_path), "--no-progress"]) == 2
    (tmp_path / "bad.csv").write_text("id,labels\n")
    assert main(["--csv", str(tmp_path / "bad.csv"), "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "is not writable" in err[0] and "is not a file" in err[1] and "header" in err[2]
    with pytest.raises(ValueError, match="must contain"):
        DownloadConfig(url_template="http://127.0.0.1/x.mp4")


@pytest.mark.parametrize("message, reason", [
    ("[youtube] abc: Video unavailable. This video has been removed by the uploader", "removed"),
    ("[youtube] abc: Video unavailable. This video is no longer available because the YouTube account "
     "associated with this video has been terminated.", "removed"),
    ("[youtube] abc: Private video. Sign in if you've been granted access to this video", "private"),
    ("[youtube] abc: Video unavailable. The uploader has not made this video available in your country", "geo-blocked"),
    ("[youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.", "age-gated"),
    ("[youtube] abc: Unable to download API page: <urlopen error [Errno -3] Temporary failure in name resolution>",
     "network"),
    ("[download] Got error: HTTPSConnectionPool: Read timed out.", "network"),
])
def test_reason_classes_of_youtube_messages(message, reason):
    assert classify_error(message) == reason


def test_manifest_survives_a_torn_last_line(tmp_path):
    good = {"id": "abcdefghijk_0_10", "ytid": "abcdefghijk", "start": 0.0, "status": "ok"}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(good) + "\n" + '{"id": "x", "st')
    assert list(read_manifest(tmp_path / MANIFEST_NAME)) == ["abcdefghijk_0_10"]
    os.remove(tmp_path / MANIFEST_NAME)


def test_split_and_ids_select_rows(tmp_path):
    from avvp.data import llp

    train, test = llp.split_ids("train")[:2], llp.split_ids("test")[:2]
    csv = _csv(tmp_path / "full.csv", list(train) + list(test))
    assert [r.id for r in read_requests(csv, split="test")[0]] == list(test)
    (tmp_path / "ids.txt").write_text(f"{train[1][:11]}\n{test[0]}\n")
    assert [r.id for r in read_requests(csv, ids_file=tmp_path / "ids.txt")[0]] == [train[1], test[0]]
    assert read_requests(csv, split="val")[0] == []
