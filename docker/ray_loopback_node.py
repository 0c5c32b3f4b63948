"""`ray start` for a WORKER node of a loopback-only (single-host) Ray cluster: `python ray_loopback_node.py start --address 127.0.0.1:PORT ...`.

With RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 every Ray address (node IP, GCS, raylets, object managers) stays on
127.0.0.1, but Ray's CLI then refuses to start a worker node (a guard meant for Windows/macOS, where the
variable is the multi-node switch). With the variable at 1, Linux Ray rewrites 127.0.0.1 into the machine's
network address. This entry point runs Ray's own CLI with only that guard lifted in the CLI process: node IP
resolution, and every process the node starts, keep loopback-only mode. Used by docker/compose.host.yaml
and tests/helpers/raycluster.py; a real cluster (docker/compose.yaml) uses plain `ray start`.
"""
import os
import subprocess
import sys
import time
import types

import ray._private.ray_constants as constants
import ray.scripts.scripts as scripts


class _Constants(types.ModuleType):
    def __getattr__(self, name):
        return getattr(constants, name)


lifted = _Constants("ray_constants_for_the_cli")
lifted.ENABLE_RAY_CLUSTER = True
scripts.ray_constants = lifted  # ray._private.services still reads the real module: loopback
args = sys.argv[1:]
# Ray gives a starting node a fixed 30 s to register with the GCS; on a loaded machine (the cold compose
# start of `make docker-test`, under CPU load) a worker can miss it and exit 1 ("timed out during startup").
# Start it again (after `ray stop`, which in a container stops only this node's processes), 3 tries in all.
ATTEMPTS = 3
for attempt in range(1, ATTEMPTS + 1):
    try:
        sys.argv = ["ray", *args]
        scripts.main()
    except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception for this
        in_container = os.path.exists("/.dockerenv")  # outside one, `ray stop` would stop every node of the host
        if "timed out during startup" not in str(err) or attempt == ATTEMPTS or "start" not in args or not in_container:
            raise
        print(f"ray_loopback_node: {err} (try {attempt} of {ATTEMPTS}); starting the node again", file=sys.stderr,
              flush=True)
        subprocess.run(["ray", "stop", "--force"], check=False)
        time.sleep(2)
