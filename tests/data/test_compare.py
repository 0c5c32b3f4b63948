"""avvp-compare: an extracted store against its own export is identical (after a bit-for-bit round trip
through avvp-import); a clean-profile store against a reference-profile store of the same clips differs
by what docs/compare.md quotes; provenance differences and one-sided ids are shown; nothing shared is
one line and exit 2."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from avvp.cli.compare import main as compare_main
from avvp.cli.export import main as export_main
from avvp.cli.extract import main as extract_main
from avvp.data.compare import compare
from avvp.data.importer import import_released
from avvp.data.store import Store
from avvp.acquire.download import DownloadConfig, download_clips, read_requests
from tests.helpers.llp_clips import LLP_CLIPS, make_sources, write_csv
from tests.helpers.loopback import LoopbackVideos
from tests.helpers.release import released_like_store

DOCS = Path(__file__).resolve().parents[2] / "docs" / "compare.md"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The README's LLP stand-ins (tests/helpers/llp_clips.py), downloaded from a loopback server with the
    official trim, then VGGish (random weights) with each profile: what docs/compare.md measured."""
    pytest.importorskip("yt_dlp")
    d = tmp_path_factory.mktemp("compare")
    server = LoopbackVideos(files=make_sources(d / "sources"))
    csv = write_csv(d / "subset.csv")
    try:
        summary = download_clips(read_requests(csv)[0], d / "videos",
                                 DownloadConfig(url_template=server.url_template, workers=2), progress=False)
    finally:
        server.close()
    assert summary.available == len(LLP_CLIPS)
    for profile in ("reference", "clean"):
        code = extract_main(["--csv", str(csv), "--videos", str(d / "videos"), "--backbone", "vggish", "--weights",
                             "random", "--executor", "local", "--no-progress", "--profile", profile,
                             "--out", str(d / f"{profile}.h5")])
        assert code == 0
    return d


@pytest.mark.slow  # ~20-40 s on 2 cores: 6 downloads + trims and two VGGish extractions (the shared fixture)
def test_store_against_its_own_export_is_identical(stores, capsys):
    store = stores / "reference.h5"
    assert export_main(["--data", str(store), "--out", str(stores / "release"), "--layout", "avvp"]) == 2  # random weights
    code = export_main(["--data", str(store), "--out", str(stores / "release"), "--layout", "avvp", "--allow-nonrelease"])
    assert code == 3  # written; the store has no resnet152 / r2plus1d (named)
    import_released(stores / "back.h5", feats_dir=stores / "release" / "feats")
    with Store(store) as a, Store(stores / "back.h5") as b:
        ids = sorted(a.ids)
        assert a.read("features/vggish", ids).tobytes() == b.read("features/vggish", ids).tobytes()
        assert a.attrs("features/vggish") == b.attrs("features/vggish")
    result = compare(store, stores / "release")
    (vggish,) = [r for r in result.arrays if r.array == "features/vggish"]
    assert len(vggish.keys) == len(LLP_CLIPS) and (vggish.cosine == 1.0).all() and (vggish.max_rel == 0.0).all()
    assert vggish.provenance == {}  # PROVENANCE.json carried the attributes
    capsys.readouterr()
    assert compare_main([str(store), str(stores / "release"), "--out", str(stores / "cmp")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"/features/vggish\s+6\s+1\.0000000\s+1\.0000000\s+0\.000e\+00\s+0\.000e\+00", out), out
    assert (stores / "cmp" / "features_vggish.png").stat().st_size > 1000
    assert "features/vggish,JSK3UrDHnUI,1.000000000,0.000000e+00" in (stores / "cmp" / "compare.csv").read_text()


@pytest.mark.slow
def test_clean_against_reference_is_what_the_docs_quote(stores, capsys):
    result = compare(stores / "clean.h5", stores / "reference.h5")
    by_array = {r.array: r for r in result.arrays}
    vggish = by_array["features/vggish"]
    assert vggish.provenance["profile"] == ("clean", "reference")
    row = next(line for line in DOCS.read_text().splitlines() if line.startswith("| `/features/vggish`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # docs quote 4-5 significant digits; the trims and the arithmetic may move the last one on other CPUs
    assert abs(np.median(vggish.cosine) - float(cells[2])) <= 2e-5, (np.median(vggish.cosine), row)
    assert abs(np.median(vggish.max_rel) / float(cells[4]) - 1) <= 0.02, (np.median(vggish.max_rel), row)
    assert vggish.cosine.min() < 1.0  # the profiles really differ


def test_provenance_one_sided_ids_and_nothing_in_common(tmp_path, capsys):
    a = released_like_store(tmp_path / "a.h5", ["JSK3UrDHnUI_2_12", "13tD0A5hnCU_3_13"], seed=1)
    b = released_like_store(tmp_path / "b.h5", ["JSK3UrDHnUI_2_12", "MVWVECUju4w_0_10"], seed=1,
                            attrs_override={"features/clip": {"precision": "bf16"}})
    assert compare_main([str(a), str(b), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "provenance differs: /features/clip precision: A 'fp32', B 'bf16'" in out
    assert "only in A: /features/clip: 1 videos: 13tD0A5hnCU" in out and "only in B: /features/clip: 1 videos: MVWVECUju4w" in out
    c = released_like_store(tmp_path / "c.h5", ["MVWVECUju4w_0_10"])
    assert compare_main([str(a), str(c), "--out", str(tmp_path / "o")]) == 2
    assert compare_main([str(a), str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"avvp-compare: {a} and {c} have no video in common (ids compare by YouTube id)",
                   f"avvp-compare: {tmp_path / 'nothing'} does not exist"]
