"""avvp/faults.py: the shared exit codes, ENOSPC detection, signal handling and the one-line guard; and
the job's wait for its workers (avvp.pipeline.ray_executor.wait_for_workers) against a fake cluster."""
from __future__ import annotations

import errno
import io
import os
import signal

import pytest

from avvp import faults


def test_exit_codes_are_the_project_convention_and_in_the_help_epilog():
    assert (faults.EXIT_OK, faults.EXIT_INTERNAL, faults.EXIT_USAGE, faults.EXIT_PARTIAL, faults.EXIT_NO_SPACE,
            faults.EXIT_SIGINT, faults.EXIT_SIGTERM) == (0, 1, 2, 3, 4, 130, 143)
    for code in faults.EXIT_CODES:
        assert f"\n  {code:<4d} " in faults.EXIT_CODES_HELP


def test_every_command_documents_the_exit_codes_in_its_help():
    import importlib
    import tomllib
    from pathlib import Path

    # every console script pyproject.toml declares, so that a new command cannot be left out
    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) >= 12
    for command, target in scripts.items():
        parser = importlib.import_module(target.split(":")[0]).build_parser()
        assert parser.epilog == faults.EXIT_CODES_HELP, command
        assert "143  interrupted by SIGTERM" in parser.format_help(), command


def test_disk_full_is_recognised_by_errno_text_or_cause():
    assert faults.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert faults.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert faults.is_disk_full(OSError("Can't write data (file write failed: ..., errno = 28, error message = 'x')"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert faults.is_disk_full(outer)
    assert not faults.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    err = faults.DiskFull("/x/data.h5.tmp", "merging")
    assert faults.is_disk_full(err) and faults.disk_full_path(err) == "/x/data.h5.tmp"
    assert str(err) == "no space left on device writing /x/data.h5.tmp (merging)"


def run_guarded(exc: BaseException, saved="3 videos are saved in x.h5"):
    buf = io.StringIO()
    with faults.guard("avvp-x", saved=lambda: saved, file=buf) as g:
        raise exc
    return g.exit_code, buf.getvalue().strip()


def test_guard_turns_each_fault_into_one_line_and_its_exit_code():
    assert run_guarded(faults.Interrupted(signal.SIGINT)) == (
        130, "avvp-x: interrupted by SIGINT; 3 videos are saved in x.h5; re-run the same command to continue")
    assert run_guarded(faults.Interrupted(signal.SIGTERM))[0] == 143
    assert run_guarded(KeyboardInterrupt())[0] == 130
    assert run_guarded(faults.DiskFull("/d/a.tmp")) == (
        4, "avvp-x: no space left on device writing /d/a.tmp; 3 videos are saved in x.h5; free space and re-run "
           "the same command to continue")
    assert run_guarded(OSError(errno.ENOSPC, "No space left on device", "/d/b"))[1].startswith(
        "avvp-x: no space left on device writing /d/b;")
    assert run_guarded(faults.OneLineError("store x is locked")) == (2, "avvp-x: error: store x is locked")
    with pytest.raises(PermissionError):  # anything else is not the guard's business
        run_guarded(PermissionError(errno.EACCES, "denied"))


def test_guard_without_fault_leaves_the_result_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with faults.guard("avvp-x") as g:
        assert signal.getsignal(signal.SIGTERM) is faults._raise_interrupted
    assert g.exit_code is None
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_real_signal_raises_interrupted_and_an_ignored_one_stays_ignored():
    buf = io.StringIO()
    with faults.guard("avvp-x", file=buf) as g:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes of the main thread
            pass
        raise AssertionError("not interrupted")
    assert g.exit_code == 143 and buf.getvalue().startswith("avvp-x: interrupted by SIGTERM; re-run")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with faults.stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # `nohup cmd &` keeps ignoring Ctrl-C
    finally:
        signal.signal(signal.SIGINT, previous)


class FakeRay:
    """cluster_resources()/nodes() of a cluster whose workers join one per poll."""

    def __init__(self, cpus_per_poll):
        self.cpus = list(cpus_per_poll)

    def cluster_resources(self):
        return {"CPU": float(self.cpus.pop(0) if len(self.cpus) > 1 else self.cpus[0])}

    def nodes(self):
        return [{"Alive": True}]


def test_the_job_waits_until_its_workers_fit_then_goes_on_or_says_why_not(capsys):
    from avvp.pipeline.ray_executor import wait_for_workers

    ray = FakeRay([0, 1, 1, 2, 2])
    wait_for_workers(ray, num_workers=2, cpus_per_worker=1.0, gpus_per_worker=0.0, timeout=30, poll=0.0, say_every=0.0)
    assert ray.cpus == [2]  # returned at the first poll that showed 2 CPUs
    assert "waiting for workers: 2 x 1 CPU (--num-workers); the cluster has 0 CPUs" in capsys.readouterr().err
    wait_for_workers(FakeRay([1]), num_workers=2, cpus_per_worker=1.0, gpus_per_worker=0.0, timeout=0.05, poll=0.01)
    assert "after 0.05 s the cluster has 1 of the 2 CPUs that 2 workers (--num-workers) ask for" in capsys.readouterr().err
