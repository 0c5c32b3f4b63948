"""avvp-extract on a folder that avvp-download filled: `--csv ... --videos DIR` reads it as it is, the store
records each clip's manifest source information, and without --out the store is ./avvp_features.h5."""
from __future__ import annotations

import json

import pytest

from avvp.acquire.download import DownloadConfig, download_clips, read_requests
from avvp.acquire.manifest import MANIFEST_NAME, read_manifest
from avvp.cli.extract import DEFAULT_STORE, build_parser, main
from avvp.data.store import Store
from avvp.pipeline.jobs import scan_folder
from tests.helpers.loopback import LoopbackVideos
from tests.helpers.media import make_clip

pytest.importorskip("yt_dlp")
LLP_IDS = ["JSK3UrDHnUI_2_12", "13tD0A5hnCU_3_13"]  # real LLP train rows with early starts


def test_extract_reads_a_downloaded_folder_and_records_its_manifest(tmp_path, monkeypatch, capsys):
    source = make_clip(tmp_path / "src.mp4", seconds=14, fps=10, size=(64, 48)).read_bytes()
    server = LoopbackVideos(files={i[:11]: source for i in LLP_IDS})
    csv = tmp_path / "subset.csv"
    csv.write_text("filename\tevent_labels\n" + "".join(f"{i}\tSpeech\n" for i in LLP_IDS + ["Jq7xZaFdjlA_0_10"]))
    try:
        summary = download_clips(read_requests(csv)[0], tmp_path / "clips",
                                 DownloadConfig(url_template=server.url_template, workers=2), progress=False)
    finally:
        server.close()
    assert summary.available == 2 and summary.by_reason == {"removed": 1}
    assert scan_folder(tmp_path / "clips").skipped.total == 0  # the manifest is not a stray file

    monkeypatch.chdir(tmp_path)
    code = main(["--csv", str(csv), "--videos", "clips", "--backbone", "vggish", "--weights", "random",
                 "--executor", "local", "--profile", "clean", "--no-progress"])
    assert code == 3  # the removed video is a 'missing' failure row
    assert f"store {tmp_path / DEFAULT_STORE}" in capsys.readouterr().err
    manifest = {r.id: r for r in read_manifest(tmp_path / "clips" / MANIFEST_NAME).values()}
    with Store(tmp_path / DEFAULT_STORE) as store:
        assert sorted(store.ids) == sorted(LLP_IDS)
        for vid, source in zip(store.ids, store.video_field("source")):
            info = json.loads(source)
            rec = manifest[vid]
            assert info["sha256"] == rec.sha256 and info["sha256_matches"] is True
            assert info["url"] == rec.url and info["trim"] == "official" and info["tools"]["yt-dlp"]
            assert info["path"].endswith(f"{vid[:11]}.mp4")
        assert [f.stage for f in store.failures()] == ["missing"]


def test_the_usage_line_needs_no_out():
    args = build_parser().parse_args(["--videos", "dir", "--backbone", "clip"])
    assert args.out is None and DEFAULT_STORE == "avvp_features.h5"  # main() fills in the default and prints it
