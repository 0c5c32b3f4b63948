"""Faults every command ends the same way: one line on stderr and a documented exit code.

The exit codes (shared by every `avvp-*` command; `EXIT_CODES_HELP` is the `--help` epilog):

    0    success
    1    unexpected internal error (a traceback: a bug to report)
    2    usage or bad input (arguments, a missing/unreadable/locked file, weights unavailable)
    3    completed, but some inputs were unavailable or failed (each one is a failure row or a line)
    4    out of disk space (what was saved before is kept; free space and re-run to continue)
    130  interrupted by SIGINT (Ctrl-C)     143  interrupted by SIGTERM (`kill`, `docker stop`)

What a command does with them (adopting this module is three lines):

    from avvp import faults

    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)              # parser: epilog=faults.EXIT_CODES_HELP
        with faults.guard("avvp-x", saved=lambda: f"{n} files are saved", resume="re-run to continue") as g:
            return work(args)
        return g.exit_code                                  # reached only when a fault was handled

`guard` installs SIGINT/SIGTERM handlers that raise `Interrupted` in the main thread (so `finally`
blocks and context managers flush and commit what is computed), and turns `Interrupted`, a full disk
(`DiskFull`, or any OSError with errno ENOSPC) and `OneLineError`s into one line and their exit code.
`saved` is called after the fault, so it reports what is on disk then, not what the command hoped to
write. Nothing here knows about stores or checkpoints: the caller says what is saved and how to continue.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_NO_SPACE = 4
EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "unexpected internal error (a bug: please report the traceback)",
    EXIT_USAGE: "usage or bad input (arguments, a missing, unreadable or locked file, weights unavailable)",
    EXIT_PARTIAL: "completed, but some inputs were unavailable or failed (listed, or failure rows)",
    EXIT_NO_SPACE: "out of disk space; what was saved is kept: free space and re-run to continue",
    EXIT_SIGINT: "interrupted by SIGINT (Ctrl-C); what was computed is saved: re-run to continue",
    EXIT_SIGTERM: "interrupted by SIGTERM (kill, docker stop); what was computed is saved: re-run to continue",
}
EXIT_CODES_HELP = "exit codes (every avvp command):\n" + "\n".join(
    f"  {code:<4d} {text}" for code, text in EXIT_CODES.items())
SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT/SIGTERM while a `guard` (or `stop_on_signals`) is active.

    A KeyboardInterrupt, so `except Exception` blocks do not swallow it and libraries that turn an interrupt
    inside their C code into their own KeyboardInterrupt (Ray's `check_signals`) still stop; the signal
    itself is recorded by the handler (`_received`), so the guard names it either way."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(SIGNAL_NAMES.get(signum, f"signal {signum}"))

    @property
    def name(self) -> str:
        return SIGNAL_NAMES.get(self.signum, f"signal {self.signum}")


class DiskFull(OSError):
    """No space left on the device while writing `path`. Raised by writers that know which file it was
    (the store journal, its merge, a checkpoint); any other OSError with errno ENOSPC is treated alike."""

    def __init__(self, path: str | os.PathLike, detail: str = ""):
        self.path = str(path)
        super().__init__(errno.ENOSPC, f"no space left on device writing {self.path}" + (f" ({detail})" if detail else ""))

    def __str__(self) -> str:
        return str(self.args[1])


class OneLineError(Exception):
    """An error whose message is complete for the user (what is wrong, which file, what to do): a
    command prints `<prog>: error: <message>` and exits with `exit_code` (default 2), no traceback."""

    exit_code = EXIT_USAGE


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    """`err`, then what it was raised from or while handling (`__cause__`, else `__context__`), each once."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_disk_full(err: BaseException) -> bool:
    """True for an OSError whose cause is a full device (errno ENOSPC or EDQUOT), also when wrapped
    (`raise ... from err`) or when a library kept only the text (h5py's messages carry `errno = 28`)."""
    return any(isinstance(e, DiskFull) or (isinstance(e, OSError) and (
        e.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(e) or "errno = 28," in str(e)))
        for e in _chain(err))


def disk_full_path(err: BaseException) -> str | None:
    """The file being written when the device filled up, when the error says (DiskFull, or OSError.filename)."""
    for e in _chain(err):
        if isinstance(e, DiskFull):
            return e.path
        if isinstance(e, OSError) and e.filename:
            return str(e.filename)
    return None


_received: list[int] = []  # signals the handler raised for, latest last


def _raise_interrupted(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Interrupted(signum)


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
                    on_signal: Callable[[int], None] | None = None) -> Iterator[None]:
    """SIGINT/SIGTERM raise `Interrupted` in the main thread while inside (or, with `on_signal`, call it with
    the signal number instead: a command whose worker threads finish on their own, avvp-download); the
    previous handlers come back after. A signal the process inherited as ignored (e.g. SIGINT of
    `nohup cmd &`) stays ignored. Outside the main thread (handlers cannot be installed there) this does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in signals:
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN:
            continue
        previous[sig] = current
        signal.signal(sig, _raise_interrupted if on_signal is None else (lambda signum, _frame: on_signal(signum)))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Guard:
    """What `guard` yields: `exit_code` is None unless a fault was handled (then the command returns it)."""

    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.message: str | None = None


def _describe(saved: Callable[[], str | None] | None) -> str:
    if saved is None:
        return ""
    try:
        text = saved()
    except Exception as err:  # noqa: BLE001 - the fault line must come out even if counting fails
        text = f"what is saved could not be counted ({type(err).__name__}: {err})"
    return f"; {text}" if text else ""


@contextmanager
def guard(prog: str, *, saved: Callable[[], str | None] | None = None, resume: str = "re-run the same command to continue",
          file=None) -> Iterator[Guard]:
    """Run a command's work with the shared fault handling (module docstring). `saved()` says what is on
    disk after a fault (e.g. "20 videos are saved in out.h5"); `resume` how to continue."""
    out = file or sys.stderr
    state = Guard()

    def finish(code: int, line: str) -> None:
        state.exit_code, state.message = code, line
        print(line, file=out, flush=True)

    seen = len(_received)
    try:
        with stop_on_signals():
            yield state
    except KeyboardInterrupt as err:
        # ours, or a library's re-raise of ours (Ray), or SIGINT before the handlers were installed
        signum = err.signum if isinstance(err, Interrupted) else (
            _received[-1] if len(_received) > seen else signal.SIGINT)
        stopped = Interrupted(signum)
        finish(stopped.exit_code, f"{prog}: interrupted by {stopped.name}{_describe(saved)}; {resume}")
    except OneLineError as err:
        finish(err.exit_code, f"{prog}: error: {err}")
    except OSError as err:
        if not is_disk_full(err):
            raise
        where = disk_full_path(err)
        finish(EXIT_NO_SPACE, f"{prog}: no space left on device" + (f" writing {where}" if where else "")
               + f"{_describe(saved)}; free space and {resume}")
