"""What can be checked of the Docker setup without a Docker engine: lint, compose structure, and that
the images install with the same script the tests' environment is built with."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_lint_clean_and_use_the_project_setup(name):
    text = (DOCKER / name).read_text()
    assert "bash tools/setup_env.sh" in text  # same install steps as `make test`
    assert "ffmpeg" in text and "useradd" in text
    assert "\nUSER " in text and "USER root" not in text  # runs as a non-root user
    assert 'ENTRYPOINT ["avvp-extract"]' in text
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed")
    out = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKER / name)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_defines_head_workers_and_job():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"ray-head", "ray-worker", "extract"} <= set(services)
    assert "--head" in services["ray-head"]["command"]
    assert any(c.startswith("--address=ray-head") for c in services["ray-worker"]["command"])
    job = services["extract"]["command"]
    assert job[job.index("--executor") + 1] == "ray" and job[job.index("--address") + 1].startswith("ray://")
    for svc in services.values():  # opening Ray to the network is this file's explicit choice
        assert svc["environment"]["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"
        assert any(v.endswith(":/data/videos:ro") for v in svc["volumes"])
    # published ports (Ray client, job server) are reachable from the host's loopback only
    assert services["ray-head"]["ports"] and all(p.startswith("127.0.0.1:") for p in services["ray-head"]["ports"])
    assert "--include-dashboard=true" in services["ray-head"]["command"]  # `ray job submit` needs the job server
    gpu = yaml.safe_load((DOCKER / "compose.gpu.yaml").read_text())["services"]
    devices = gpu["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert gpu["ray-worker"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"


def test_compose_config_parses_when_a_client_is_present():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` client on this machine")
    out = subprocess.run([docker, "compose", "-f", str(DOCKER / "compose.yaml"), "config", "-q"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_host_compose_keeps_every_ray_address_on_loopback():
    services = yaml.safe_load((DOCKER / "compose.host.yaml").read_text())["services"]
    assert {"ray-head", "ray-worker-1", "ray-worker-2", "extract"} <= set(services)
    for name, svc in services.items():
        assert svc["network_mode"] == "host", name
        assert svc["environment"]["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0", name
        words = svc["command"]
        assert "ports" not in svc
        for w in words:  # every address a service names is on 127.0.0.1
            if w.startswith(("--node-ip-address=", "--address=", "--dashboard-host=")) or w.startswith("ray://"):
                assert "127.0.0.1" in w, (name, w)
    assert "--include-dashboard=true" in services["ray-head"]["command"]  # the job server of `ray job submit`
    assert all("ray_loopback_node.py" in services[w]["entrypoint"][-1] for w in ("ray-worker-1", "ray-worker-2"))


def test_images_install_the_cluster_extra_non_editable():
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["cluster"]
    assert any(r.startswith("ray[default") for r in extra)  # dashboard + job server on the head
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        assert "ARG BASE_IMAGE=" in text and "ARG AVVP_TORCH=" in text
        assert 'AVVP_INSTALL="/opt/avvp/src[cluster]"' in text and "[dev]" not in text


def _depends(svc: dict) -> dict:
    deps = svc.get("depends_on", {})
    return {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps


@pytest.mark.parametrize("files", [("compose.yaml",), ("compose.yaml", "compose.gpu.yaml"), ("compose.host.yaml",)],
                         ids=["cpu", "gpu", "host"])
def test_one_compose_up_starts_workers_and_job_only_after_the_head_answers(files):
    """The race of a cold `docker compose up`: the job must not connect before the head's GCS, client server
    and job server answer (healthcheck + service_healthy), and then waits for its --num-workers itself."""
    services: dict = {}
    for name in files:  # the override merges service by service (only the keys it names)
        for svc, body in yaml.safe_load((DOCKER / name).read_text())["services"].items():
            services.setdefault(svc, {}).update(body)
    head = services["ray-head"]
    probe = " ".join(head["healthcheck"]["test"])
    assert "create_connection" in probe and "import ray" not in probe  # cheap: no Ray import every few seconds
    workers = [s for s in services if s.startswith("ray-worker")]
    for name in [*workers, "extract"]:
        assert _depends(services[name])["ray-head"]["condition"] == "service_healthy", name
    job = services["extract"]["command"]
    assert "--num-workers" in job and "--connect-timeout" in job
    head_cmd = head["command"]
    assert "--num-cpus=0" in head_cmd  # the head coordinates: waiting for N workers' CPUs means the workers


def test_docker_test_runs_three_cold_compose_ups_under_load():
    text = (DOCKER / "test.sh").read_text()
    assert "up --abort-on-container-exit --exit-code-from extract" in text
    assert "for i in 1 2 3" in text and "while :; do :; done" in text and 'kill "$pid"' in text
