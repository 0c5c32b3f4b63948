"""Environment defaults applied before any heavy library is imported.

laion_clap reaches the Hugging Face hub at import; on a machine without network it retries for about
11 minutes. We default to offline mode (set before huggingface_hub is imported, which is when it reads
the variable). Set `AVVP_ONLINE=1` to let the libraries download pretrained weights.
Ray's embedded cluster listens on loopback only and writes no auth token unless the user says otherwise.
"""
import os

if os.environ.get("AVVP_ONLINE", "0") != "1":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
