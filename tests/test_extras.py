"""pyproject extras: the base install runs avvp-import/-train/-eval/-pseudolabel, and a command whose extra is
missing stops with one line naming `pip install 'avvp[...]'`. Checked in a subprocess whose imports of the
extras' packages fail (a sys.meta_path finder), as on a base install."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from avvp._extras import EXTRA_MODULES

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# the import name of each distribution the extras list
IMPORT_NAME = {"torchvision": "torchvision", "open_clip_torch": "open_clip", "laion-clap": "laion_clap",
               "transformers": "transformers", "decord": "decord", "ffmpeg-python": "ffmpeg", "soundfile": "soundfile",
               "soxr": "soxr", "pillow": "PIL", "ray": "ray", "pyarrow": "pyarrow", "yt-dlp": "yt_dlp"}
# blocked in the subprocess: everything the extras add except pillow, which matplotlib (base) depends on
BLOCKED = sorted(set(EXTRA_MODULES["extract"] + EXTRA_MODULES["ray"] + EXTRA_MODULES["download"]) - {"PIL"})

BLOCKER = textwrap.dedent(f"""
    import sys

    class BlockExtras:
        blocked = {BLOCKED!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ImportError(f"{{name}} is blocked (not installed)", name=name)
            return None

    sys.meta_path.insert(0, BlockExtras())
""")


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def test_base_dependencies_exclude_the_extras_packages():
    base = {_name(r) for r in PYPROJECT["dependencies"]}
    extras = PYPROJECT["optional-dependencies"]
    assert base == {"torch", "numpy", "h5py", "tqdm", "matplotlib", "pyyaml"}
    extract, ray = {_name(r) for r in extras["extract"]}, {_name(r) for r in extras["ray"]}
    assert extract == {"torchvision", "open_clip_torch", "laion-clap", "transformers", "decord", "ffmpeg-python",
                       "soundfile", "soxr", "pillow"}
    assert ray == {"ray", "pyarrow"}
    assert not base & (extract | ray)
    # avvp/_extras.py checks exactly the packages pyproject lists
    assert sorted(IMPORT_NAME[n] for n in extract) == sorted(EXTRA_MODULES["extract"])
    assert sorted(IMPORT_NAME[n] for n in ray) == sorted(EXTRA_MODULES["ray"])
    assert extras["parse"] == ["avvp[extract]"]
    assert sorted(IMPORT_NAME[_name(r)] for r in extras["download"]) == sorted(EXTRA_MODULES["download"])
    assert extras["all"] == ["avvp[extract,ray,parse,download]"]
    assert "avvp[all]" in extras["cluster"]  # the Docker images (AVVP_INSTALL=...[cluster]) run every command
    assert {"pytest", "ruff"} <= {_name(r) for r in extras["dev"]}
    # make setup / tools/setup_env.sh install everything by default
    assert "${AVVP_INSTALL:--e $here[all,dev]}" in (ROOT / "tools" / "setup_env.sh").read_text()


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    from avvp.data.synthetic import SyntheticConfig, generate_synthetic
    from avvp.extract.backbones import feature_specs

    path = tmp_path_factory.mktemp("extras") / "syn.h5"
    cfg = SyntheticConfig(num_train=16, num_val=6, num_test=6, features=("vggish", "clip", "clap"),
                          dims=(("vggish", 8), ("clip", 8), ("clap", 8)), seed=0)
    generate_synthetic(path, cfg, feature_specs(cfg.features))
    return path


def test_the_blocker_blocks():
    out = _run("import importlib.util\ntry:\n    import open_clip\nexcept ImportError as e:\n    print('blocked', e)\n"
               "from avvp._extras import missing_modules\nprint(missing_modules('extract'), missing_modules('ray'))",
               ROOT)
    assert out.returncode == 0, out.stderr
    assert "blocked open_clip is blocked" in out.stdout
    assert "['torchvision', 'open_clip', 'laion_clap', 'transformers', 'decord', 'ffmpeg', 'soundfile', 'soxr'] " \
           "['ray', 'pyarrow']" in out.stdout


def test_base_commands_run_without_the_extras(tiny_store, tmp_path):
    run = tmp_path / "run"
    code = textwrap.dedent(f"""
        import contextlib, io, json
        from avvp.cli import compare, convert_checkpoint, eval as eval_cli, export, import_feats, pseudolabel, train

        helps = {{}}
        for module in (import_feats, train, eval_cli, pseudolabel, convert_checkpoint, export, compare):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                try:
                    module.main(["--help"])
                except SystemExit as exit:
                    helps[module.__name__] = (exit.code, "usage:" in buf.getvalue())
        rc_pseudo = pseudolabel.main(["--data", {str(tiny_store)!r}])
        rc_train = train.main(["--preset", "valor", "--labels", "pseudo", "--data", {str(tiny_store)!r},
                               "--out", {str(run)!r}, "--epochs", "1", "--no-progress",
                               "--audio", "vggish", "--visual", "clip,none",
                               "--set", "model.options.hidden=8", "--set", "model.options.ff=8"])
        with contextlib.redirect_stdout(io.StringIO()) as buf:
            rc_eval = eval_cli.main(["--pred", {str(run / "predictions_test.h5")!r}, "--data", {str(tiny_store)!r},
                                     "--split", "test", "--json"])
        import sys
        blocked = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
        print(json.dumps({{"helps": helps, "rc": [rc_pseudo, rc_train, rc_eval], "blocked_loaded": blocked,
                           "eval": json.loads(buf.getvalue())}}))
    """)
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(v == [0, True] for v in result["helps"].values()) and len(result["helps"]) == 7, result["helps"]
    assert result["rc"] == [0, 0, 0], out.stderr[-3000:]
    assert result["blocked_loaded"] == []
    assert 0 <= result["eval"]["segment"]["audio"] <= 100


def test_extract_without_its_extra_is_one_line_naming_the_pip_command(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"not decoded: the extra check comes first")
    code = textwrap.dedent(f"""
        import contextlib, io, sys
        from avvp.cli import extract
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                extract.main(["--help"])
            except SystemExit as exit:
                assert exit.code == 0
        for executor in ("local", "ray"):
            rc = extract.main(["--videos", {str(videos)!r}, "--backbone", "vggish", "--out", "{tmp_path}/s_" + executor,
                               "--executor", executor, "--no-progress"])
            print("rc", rc, file=sys.stderr)
        from avvp.extract import network_inputs
        try:
            network_inputs({str(videos / "a.mp4")!r}, "vggish")
        except ImportError as err:
            print("api:", err, file=sys.stderr)
    """)
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert lines.count("rc 2") == 2, lines
    errors = [line for line in lines if line.startswith("avvp-extract: error:")]
    assert len(errors) == 2 and len(lines) == 5, lines  # one line per run, no traceback
    assert "feature extraction needs the 'extract' extra: pip install 'avvp[extract]' (missing: torchvision, " \
           "open_clip" in errors[0]
    # the default executor also needs Ray: one command installs both
    assert "the Ray executor needs the 'extract,ray' extras: pip install 'avvp[extract,ray]' (or --executor local)" \
           in errors[1] and errors[1].endswith("soxr, ray, pyarrow)")
    assert "api: network_inputs needs the 'extract' extra: pip install 'avvp[extract]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_ray_executor_without_its_extra_names_avvp_ray(tmp_path):
    code = textwrap.dedent("""
        import sys
        sys.meta_path[0].blocked = ["ray", "pyarrow"]  # extraction installed, Ray not
        from avvp._extras import MissingExtra
        from avvp.pipeline.core import ExtractionConfig
        from avvp.pipeline.executors import EXECUTORS, ExecutorOptions
        try:
            EXECUTORS.get("ray")([], ExtractionConfig(backbones=("vggish",)), "unused.h5", ExecutorOptions())
        except MissingExtra as err:
            print(err)
    """)
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == ("the Ray executor needs the 'ray' extra: pip install 'avvp[ray]' (or --executor "
                                  "local) (missing: ray, pyarrow)")


def test_download_without_its_extra_names_avvp_download(tmp_path):
    (tmp_path / "c.csv").write_text("filename\tevent_labels\nabcdefghijk_0_10\tSpeech\n")
    code = textwrap.dedent(f"""
        import sys
        from avvp.cli import download
        print("rc", download.main(["--csv", {str(tmp_path / "c.csv")!r}, "--out", {str(tmp_path / "v")!r}]), file=sys.stderr)
    """)
    out = _run(code, tmp_path)
    lines = out.stderr.strip().splitlines()
    assert lines == ["avvp-download: error: avvp-download needs the 'download' extra: pip install 'avvp[download]' "
                     "(missing: yt_dlp)", "rc 2"], lines
