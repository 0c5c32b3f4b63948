"""A real multi-node Ray cluster on 127.0.0.1 for tests: a head and worker nodes, each its own
`ray start --block` process (own session, so the test stops exactly what it started, by process group).

Every node runs with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which keeps every Ray address (node IP, GCS,
raylets, object managers) on loopback. Ray's CLI also refuses to start a *worker* node in that mode (a
guard meant for Windows/macOS, where the variable is the switch for multi-node clusters); on Linux the
only alternative, the variable at 1, makes Ray rewrite 127.0.0.1 into the machine's network address. So a
worker node is started through docker/ray_loopback_node.py (also used by docker/compose.host.yaml): Ray's
own CLI with that one guard lifted in the CLI process; node IP resolution, and every process the node
starts, keep loopback-only mode.

    head = RayNode.head(tmp)          # GCS on 127.0.0.1:head.port
    worker = RayNode.worker(head)
    ...
    worker.kill(); head.stop()
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    # the nodes' worker processes import this checkout's avvp, as the test process does
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    return env


def session_pids(leader: int) -> list[int]:
    """Processes of the session that `leader` started (the node's raylet, workers, agents)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == leader:  # field 6 of /proc/PID/stat: session id
                pids.append(int(entry.name))
    return pids


class RayNode:
    def __init__(self, args: list[str], log: Path, port: int, temp_dir: str):
        self.port, self.temp_dir, self.log = port, temp_dir, log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=node_env(), cwd=ROOT,
                                         start_new_session=True)
        deadline = time.time() + 90
        while b"Ray runtime started" not in log.read_bytes():
            if self.proc.poll() is not None or time.time() > deadline:
                self.kill()
                raise RuntimeError(f"ray node did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def head(cls, where: Path, num_cpus: int = 1) -> "RayNode":
        # a short temp dir: Ray's unix sockets live under it (path length limit)
        temp_dir = tempfile.mkdtemp(prefix="avvp-rc-", dir="/tmp")
        port = free_port()
        args = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                "--num-cpus", str(num_cpus), "--temp-dir", temp_dir, "--include-dashboard", "false",
                "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                "--metrics-export-port", str(free_port()), "--disable-usage-stats"]
        return cls(args, where / f"head-{port}.log", port, temp_dir)

    @classmethod
    def worker(cls, head: "RayNode", where: Path, num_cpus: int = 1) -> "RayNode":
        args = [sys.executable, str(ROOT / "docker" / "ray_loopback_node.py"), "start", "--block", "--address", head.address, "--node-ip-address", "127.0.0.1",
                "--num-cpus", str(num_cpus), "--dashboard-agent-listen-port", str(free_port()),
                "--metrics-export-port", str(free_port()), "--disable-usage-stats"]
        n = len(list(where.glob("worker-*.log")))
        return cls(args, where / f"worker-{n}.log", head.port, head.temp_dir)

    def pids(self) -> list[int]:
        return session_pids(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the node: its `ray start` process and every process of its session (a machine lost)."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Ask the node to stop (SIGTERM makes `ray start --block` stop its processes), then kill leftovers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
