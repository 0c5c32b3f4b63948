"""A real command stopped by a signal, as a terminal's Ctrl-C or `kill` does: started with SIGINT/SIGTERM at
their defaults (a test runner may ignore them), signalled once it reached a given point, and checked to
end the documented way (exit 128 + signal, no traceback)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]
SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


def child_env() -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH (the child imports the avvp under test)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def interrupt_when(cmd: Sequence[str], ready: Callable[[], bool], sig: int, timeout: float = 300) -> tuple[str, float]:
    """Run `cmd`, send `sig` as soon as `ready()` holds, and check that the command exits with 128 + sig and
    no traceback; (the last line of its stderr, seconds from the signal to the exit)."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env(),
                            preexec_fn=default_signals)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before the signal: " + proc.stderr.read()[-2000:]
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    err = proc.communicate(timeout=120)[1]
    stop_seconds = time.monotonic() - t0
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return err.strip().splitlines()[-1], stop_seconds
