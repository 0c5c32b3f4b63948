#!/usr/bin/env bash
# `make docker-test`: build the CPU image and run it for real, on loopback only.
#   1. base image: $BASE_IMAGE, else ../shared/tools/docker-local-base.sh (starts dockerd without a
#      default bridge and builds a local Debian base whose pip/apt are set up as on the build machine);
#   2. docker build --network host of docker/Dockerfile;
#   3. avvp-extract in a container with --network none on generated clips == a local run, value for value;
#   4. head + 2 workers from docker/compose.host.yaml (host network, every Ray address on 127.0.0.1):
#      the extract job (Ray client) and a `ray job submit` job; both stores == the local run;
#   5. the user's one-command start, three times in a row from cold (fresh containers, fresh ports), with
#      two busy processes loading the CPUs (started and stopped here, by pid):
#      `docker compose up --abort-on-container-exit --exit-code-from extract` of head + 2 workers + the
#      job (its command swapped for the test's clips by an override file); each store == the local run;
#   6. tear down the compose projects this script created (by their names; nothing else is touched).
# Prints one summary line with the times.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PY:-.venv/bin/python}
tag=${AVVP_IMAGE:-avvp:cpu-test}
project=avvp-dtest-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/avvp-dtest.XXXXXX")
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
now() { date +%s; }
compose() { docker compose -p "$project" -f docker/compose.host.yaml "$@"; }
busy=()
stop_busy() {
  for pid in "${busy[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${busy[@]}"; do wait "$pid" 2>/dev/null || true; done
  busy=()
}
cleanup() {
  stop_busy
  compose down --remove-orphans --timeout 5 >/dev/null 2>&1 || true
  for i in 1 2 3; do
    docker compose -p "$project-up$i" -f docker/compose.host.yaml down --remove-orphans --timeout 5 >/dev/null 2>&1 || true
  done
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

t0=$(now)
base=${BASE_IMAGE:-$(bash ../shared/tools/docker-local-base.sh | tail -1)}
t_base=$(( $(now) - t0 ))

t=$(now)
docker build --network host --build-arg BASE_IMAGE="$base" ${AVVP_TORCH:+--build-arg AVVP_TORCH="$AVVP_TORCH"} \
  -f docker/Dockerfile -t "$tag" . >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
t_build=$(( $(now) - t ))
size_mb=$(( $(docker image inspect -f '{{.Size}}' "$tag") / 1000000 ))

# clips (made with the test suite's generator) and the local reference run
mkdir -p "$work/videos" "$work/out" "$work/weights"
"$py" -c "
import sys; sys.path.insert(0, '.')
from tests.helpers.media import make_clip
for i, s in enumerate((10, 10, 10)):  # 10 s: the default reference profile rejects shorter clips
    make_clip('$work/videos/clip%d.mp4' % i, seconds=s, audio=i != 2, size=(64, 48))"
chmod -R a+rwX "$work"
args=(--backbone vggish --weights random --device cpu --batch-size 1 --no-progress)
t=$(now)
OMP_NUM_THREADS=1 "$py" -m avvp.cli.extract --videos "$work/videos" --out "$work/local.h5" "${args[@]}" --executor local
t_local=$(( $(now) - t ))

compare() {  # store == local store: ids, features, failures
  "$py" - "$work/local.h5" "$1" <<'PY'
import sys
import numpy as np
from avvp.data.store import Store
def load(p):
    with Store(p) as s:
        o = np.argsort(s.ids)
        return (list(s.ids[o]), {a: s.read(a)[o] for a in s.arrays() if a.startswith("features/")},
                sorted((f.id, f.stage) for f in s.failures()))
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a[0] == b[0] and a[2] == b[2], (a[0], b[0], a[2], b[2])
assert a[1].keys() == b[1].keys() and a[1], (a[1].keys(), b[1].keys())
for k in a[1]:
    np.testing.assert_array_equal(a[1][k], b[1][k])
print(f"docker-test: {sys.argv[2].rsplit('/', 1)[-1]} == local.h5 ({len(a[0])} videos, {sorted(a[1])})")
PY
}

# 3. one container, no network at all (embedded Ray inside it)
t=$(now)
docker run --rm --network none --shm-size 1g -e OMP_NUM_THREADS=1 -v "$work/videos:/data/videos:ro" -v "$work/out:/data/out" \
  "$tag" --videos /data/videos --out /data/out/none.h5 "${args[@]}"
t_none=$(( $(now) - t ))
compare "$work/out/none.h5"

# 4. head + 2 workers on the host network, loopback addresses only
free_port() { "$py" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
export AVVP_IMAGE=$tag VIDEOS=$work/videos OUT=$work/out WEIGHTS=$work/weights
RAY_PORT=$(free_port); CLIENT_PORT=$(free_port); JOB_PORT=$(free_port)
AGENT_PORT_0=$(free_port); AGENT_PORT_1=$(free_port); AGENT_PORT_2=$(free_port)
export RAY_PORT CLIENT_PORT JOB_PORT AGENT_PORT_0 AGENT_PORT_1 AGENT_PORT_2
t=$(now)
compose up -d ray-head ray-worker-1 ray-worker-2
for _ in $(seq 120); do
  nodes=$(compose exec -T ray-head python -c "import ray; ray.init(address='auto', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))" 2>/dev/null | tail -1 || true)
  [ "$nodes" = 3 ] && break; sleep 2
done
[ "$nodes" = 3 ] || { compose logs --tail 40; echo "docker-test: cluster did not reach 3 nodes (got '$nodes')" >&2; exit 1; }
t_up=$(( $(now) - t ))

t=$(now)
compose run --rm --no-deps extract --videos /data/videos --out /data/out/cluster.h5 "${args[@]}" \
  --executor ray --address "ray://127.0.0.1:$CLIENT_PORT" --num-workers 2
t_job=$(( $(now) - t ))
compare "$work/out/cluster.h5"

t=$(now)
compose run --rm --no-deps --entrypoint ray extract job submit --address "http://127.0.0.1:$JOB_PORT" -- \
  avvp-extract --videos /data/videos --out /data/out/submitted.h5 "${args[@]}" --executor ray --address auto --num-workers 2
t_submit=$(( $(now) - t ))
compare "$work/out/submitted.h5"

t=$(now)
compose down --remove-orphans --timeout 5 >/dev/null 2>&1
t_down=$(( $(now) - t ))

# 5. one `docker compose up` of head + workers + job, from cold, under CPU load, three times in a row
cat >"$work/job.yaml" <<YAML
services:
  extract:
    command: ["--videos", "/data/videos", "--out", "/data/out/\${JOB_STORE}", $(printf '"%s", ' "${args[@]}")
              "--executor", "ray", "--address", "ray://127.0.0.1:\${CLIENT_PORT}", "--num-workers", "2",
              "--connect-timeout", "120"]
YAML
for _ in 1 2; do bash -c 'while :; do :; done' & busy+=($!); done
ups=()
for i in 1 2 3; do
  RAY_PORT=$(free_port); CLIENT_PORT=$(free_port); JOB_PORT=$(free_port)
  AGENT_PORT_0=$(free_port); AGENT_PORT_1=$(free_port); AGENT_PORT_2=$(free_port)
  export RAY_PORT CLIENT_PORT JOB_PORT AGENT_PORT_0 AGENT_PORT_1 AGENT_PORT_2 JOB_STORE=up$i.h5
  up=(docker compose -p "$project-up$i" -f docker/compose.host.yaml -f "$work/job.yaml")
  t=$(now)
  if ! "${up[@]}" up --abort-on-container-exit --exit-code-from extract >"$work/up$i.log" 2>&1; then
    tail -60 "$work/up$i.log"; echo "docker-test: cold compose up $i of 3 failed (log above)" >&2; exit 1
  fi
  ups+=("$(( $(now) - t ))s")
  "${up[@]}" down --remove-orphans --timeout 5 >/dev/null 2>&1
  grep -h "avvp-extract: waiting\|avvp-extract: connected\|the cluster has" "$work/up$i.log" | sed "s/^/  up $i: /" || true
  compare "$work/out/up$i.h5"
done
stop_busy

echo "docker-test: PASS image $tag ${size_mb} MB (base $base); base ${t_base}s, build ${t_build}s, local ${t_local}s," \
     "--network none ${t_none}s, cluster up ${t_up}s (3 nodes), ray:// job ${t_job}s, ray job submit ${t_submit}s," \
     "down ${t_down}s; cold compose up + job under 2 busy processes: 3 of 3 passed (${ups[*]}); total $(( $(now) - t0 ))s"
