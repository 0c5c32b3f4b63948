"""Environment defaults: `import avvp` changes nothing; console scripts and the laion_clap import apply them."""
import os
import subprocess
import sys

import pytest

KEYS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "AVVP_ONLINE")


def run_clean(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_import_leaves_environment_alone():
    r = run_clean("import os, avvp, avvp.extract, avvp.cli.extract; print([k for k in %r if k in os.environ])" % (KEYS,))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["eval", "extract", "import_feats", "parse", "pseudolabel", "train"])
def test_console_scripts_apply_defaults_first(module):
    code = (
        f"import os, avvp.cli.{module} as m\n"
        "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('HF_HUB_OFFLINE'), os.environ.get('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'), "
        "os.environ.get('RAY_AUTH_MODE'))"
    )
    r = run_clean(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "1 0 disabled"


def test_online_request_and_user_values_are_kept():
    code = (
        "import os; os.environ['AVVP_ONLINE'] = '1'; os.environ['RAY_AUTH_MODE'] = 'token'\n"
        "from avvp._env import apply_defaults; apply_defaults()\n"
        "print(os.environ.get('HF_HUB_OFFLINE'), os.environ['RAY_AUTH_MODE'])"
    )
    r = run_clean(code)
    assert r.stdout.strip() == "None token", r.stderr


def test_laion_clap_refused_when_hub_was_imported_online():
    # huggingface_hub read HF_HUB_OFFLINE at its import; setting it afterwards would not help
    code = (
        "import huggingface_hub.constants\n"
        "from avvp.extract.backbones.clap_offline import import_laion_clap\n"
        "try:\n    import_laion_clap()\nexcept RuntimeError as e:\n    print('refused:', e)\n"
    )
    r = run_clean(code)
    assert "refused: refusing to import laion_clap" in r.stdout, (r.stdout, r.stderr)
