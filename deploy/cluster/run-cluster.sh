#!/usr/bin/env bash
# Try-out of the cluster on this host (deploy/cluster/README.md): a Redis, N B2BUA
# instances and one Kamailio front (kamailio-front.cfg), every one on loopback.
#
#   deploy/cluster/run-cluster.sh [options] [N]     N instances, 3 by default
#
# Builds nothing: it runs BUILD_DIR/b2bua/b2bua (deploy/run.sh builds it). It writes every
# config into a run directory, starts the pieces, prints what runs where and how to place a
# call, and stops everything on Ctrl-C (or when the front exits).
#
# Instance i (1..N) is dispatcher set i and has cluster.instance_id "i"; the front's set
# ALL_SET (100) holds them all. By default instance i listens on 127.0.0.(i+1):5060, its
# metrics on 127.0.0.(i+1):9464.
#
# Options (every address and port can be set, so that a test can use free ports):
#   --run-dir DIR        configs, logs, pid files and start scripts (default: a new
#                        directory under /tmp, kept afterwards)
#   --no-wait            start, print, and return; everything keeps running, its pids in
#                        DIR/*.pid; stop it with --stop DIR
#   --stop DIR           stop what a --no-wait run left in DIR, and exit
#   --build-dir DIR      where the b2bua binary was built (default build/release)
#   --b2bua PATH         the binary itself (default BUILD_DIR/b2bua/b2bua)
#   --front IP:PORT      the front (default 127.0.0.1:5060)
#   --instances LIST     the instances, comma-separated IP:PORT (overrides N)
#   --metrics LIST       their metrics endpoints, comma-separated IP:PORT, in the same
#                        order (default: each instance's IP, port --metrics-port)
#   --metrics-port PORT  (default 9464)
#   --redis IP:PORT      (default 127.0.0.1:6379)
#   --callee IP:PORT     where the instances' default route sends calls (default
#                        127.0.0.1:5070)
#   --shards N           shards per instance (default 1)
#   --children N         front UDP workers (default: the number of cores)
#   --front-log-level L  1: failovers only; 2: where every request goes (default 1)
#   --no-redis, --no-instances, --no-front
#                        leave that piece out (one already running, or stand-ins);
#                        its configs are written all the same
#
# In the run directory:
#   cluster.env          what runs where, KEY=VALUE lines
#   dispatcher.list      the front's destination sets
#   b2bua-<i>.yaml       instance i's config
#   start-<piece>.sh     starts one piece in the background and writes <piece>.pid;
#                        pieces: redis, b2bua-<i>, kamailio (a test restarts an instance
#                        it killed by running start-b2bua-<i>.sh again)
#   <piece>.log, <piece>.pid
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cfg_dir="$repo/deploy/cluster"

die() { echo "run-cluster.sh: $*" >&2; exit 2; }

# The pieces, in the order they are stopped: the front first, so that no new request
# reaches an instance that is going away.
stop_run_dir() {  # stop_run_dir DIR
  local dir=$1 pidfile pid name deadline
  for pidfile in "$dir"/kamailio.pid "$dir"/b2bua-*.pid "$dir"/redis.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    name=$(basename "$pidfile" .pid)
    rm -f "$pidfile"
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    # Only a process this script started: the pid may have been reused since.
    case "$(ps -p "$pid" -o comm= 2>/dev/null || true)" in
      kamailio | b2bua | redis-server) ;;
      *) continue ;;
    esac
    kill -TERM "$pid" 2>/dev/null || continue
    # The B2BUA drains on SIGTERM: it exits once its calls have ended.
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "run-cluster.sh: $name (pid $pid) still up after 10 s, killed" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

n=3
run_dir=
wait_mode=yes
build_dir="$repo/build/release"
b2bua_bin=
front=127.0.0.1:5060
instances=
metrics=
metrics_port=9464
redis=127.0.0.1:6379
callee=127.0.0.1:5070
shards=1
children=$(nproc)
front_log_level=1
with_redis=yes
with_instances=yes
with_front=yes
all_set=100

while [ $# -gt 0 ]; do
  case "$1" in
    --run-dir) run_dir=${2:?}; shift ;;
    --no-wait) wait_mode=no ;;
    --stop) stop_run_dir "${2:?--stop needs the run directory}"; exit 0 ;;
    --build-dir) build_dir=${2:?}; shift ;;
    --b2bua) b2bua_bin=${2:?}; shift ;;
    --front) front=${2:?}; shift ;;
    --instances) instances=${2:?}; shift ;;
    --metrics) metrics=${2:?}; shift ;;
    --metrics-port) metrics_port=${2:?}; shift ;;
    --redis) redis=${2:?}; shift ;;
    --callee) callee=${2:?}; shift ;;
    --shards) shards=${2:?}; shift ;;
    --children) children=${2:?}; shift ;;
    --front-log-level) front_log_level=${2:?}; shift ;;
    --no-redis) with_redis=no ;;
    --no-instances) with_instances=no ;;
    --no-front) with_front=no ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) n=$1 ;;
    *) die "unknown argument '$1' (--help lists the options)" ;;
  esac
  shift
done

ip_of() { echo "${1%:*}"; }
port_of() { echo "${1##*:}"; }
is_ip_port() { [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}:[0-9]{1,5}$ ]]; }

if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ]; then
  die "N must be a number of instances, at least 1"
fi
if [ -n "$instances" ]; then
  IFS=, read -r -a inst <<<"$instances"
  n=${#inst[@]}
else
  [ "$n" -le 253 ] || die "at most 253 instances on 127.0.0.2 and up (or pass --instances)"
  inst=()
  for ((i = 1; i <= n; i++)); do inst+=("127.0.0.$((i + 1)):5060"); done
fi
[ "$n" -lt "$all_set" ] || die "instance ids must stay below the set of all instances ($all_set)"
if [ -n "$metrics" ]; then
  IFS=, read -r -a mets <<<"$metrics"
  [ ${#mets[@]} -eq "$n" ] || die "--metrics needs one IP:PORT per instance ($n)"
else
  mets=()
  for a in "${inst[@]}"; do mets+=("$(ip_of "$a"):$metrics_port"); done
fi
for a in "$front" "$redis" "$callee" "${inst[@]}" "${mets[@]}"; do
  is_ip_port "$a" || die "'$a' is not IPv4:PORT"
done
if [ "$with_instances" = yes ] && [ -n "$(printf '%s\n' "${mets[@]}" | sort | uniq -d)" ]; then
  die "two instances share a metrics endpoint: pass --metrics"
fi

b2bua_bin=${b2bua_bin:-$build_dir/b2bua/b2bua}
if [ "$with_instances" = yes ] && [ ! -x "$b2bua_bin" ]; then
  die "no B2BUA binary at $b2bua_bin; build it first:
    cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
    cmake --build build/release --target b2bua
(or deploy/run.sh, which also installs the dependencies)"
fi
need() { command -v "$1" >/dev/null || die "$1 is not installed ($2)"; }
[ "$with_front" = no ] || need kamailio "apt-get install kamailio"
[ "$with_redis" = no ] || need redis-server "apt-get install redis-server"
need curl "apt-get install curl"

if [ -z "$run_dir" ]; then
  run_dir=$(mktemp -d /tmp/b2bua-cluster.XXXXXX)
else
  mkdir -p "$run_dir"
  run_dir=$(cd "$run_dir" && pwd)
fi
# Pieces this run has started; stopped on exit unless --no-wait succeeded.
started=no
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$started" = yes ] && { [ "$wait_mode" = yes ] || [ $rc -ne 0 ]; }; then
    echo "stopping the cluster in $run_dir" >&2
    stop_run_dir "$run_dir"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until `check` succeeds, or fails naming the piece and the end of its log.
wait_for() {  # wait_for NAME PIDFILE SECONDS CHECK...
  local name=$1 pidfile=$2 deadline=$((SECONDS + $3))
  shift 3
  while ! "$@" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$pidfile" 2>/dev/null || echo 0)" 2>/dev/null; then
      echo "run-cluster.sh: $name exited at start; the end of $run_dir/$name.log:" >&2
      tail -n 20 "$run_dir/$name.log" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "run-cluster.sh: $name not ready after $3 s; see $run_dir/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
}
udp_bound() { ss -Hlun "src $(ip_of "$1") and sport = :$(port_of "$1")" | grep -q .; }

# A start script per piece: in the background, its log appended, its pid in <piece>.pid.
write_start_script() {  # write_start_script PIECE COMMAND...
  local piece=$1
  shift
  {
    echo "#!/usr/bin/env bash"
    echo "# Starts $piece in the background (written by run-cluster.sh)."
    echo "# The caller's open files stay with the caller: a daemon that inherited the lock"
    echo "# of 'flock FILE run-cluster.sh' or a test's pipe would hold it as long as it runs."
    # shellcheck disable=SC2016
    echo 'for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done'
    printf '%q ' "$@"
    printf '>>%q 2>&1 </dev/null &\n' "$run_dir/$piece.log"
    printf 'echo $! >%q\n' "$run_dir/$piece.pid"
  } >"$run_dir/start-$piece.sh"
  chmod +x "$run_dir/start-$piece.sh"
}

# --- configs ---------------------------------------------------------------------------

{
  echo "# set destination: instance i is set i; set $all_set holds every instance."
  for ((i = 1; i <= n; i++)); do echo "$i sip:${inst[i - 1]}"; done
  for ((i = 1; i <= n; i++)); do echo "$all_set sip:${inst[i - 1]}"; done
} >"$run_dir/dispatcher.list"

for ((i = 1; i <= n; i++)); do
  cat >"$run_dir/b2bua-$i.yaml" <<EOF
# Instance $i of the try-out cluster (run-cluster.sh). Every key left out takes its value
# from b2bua/default_config.h.
access:
  # Every request arrives from the front, and the callee is on loopback too.
  trusted: [127.0.0.0/8, "::1/128"]
  callers: [127.0.0.0/8, "::1/128"]
  relay_to_request_uri: trusted
limits:
  drain_timeout: 5s
# The try-out's callee is a sipp scenario, which does not answer OPTIONS.
probe: { options_interval: 0 }
# Every call goes to the callee.
routes:
  - prefix: ""
    next_hops: ["sip:$callee"]
cluster:
  instance_id: "$i"
  front: "$front"
  redis: "$redis"
EOF
done

# --- start -----------------------------------------------------------------------------

write_start_script redis redis-server --bind "$(ip_of "$redis")" --port "$(port_of "$redis")" \
  --save '' --appendonly no --dir "$run_dir"
for ((i = 1; i <= n; i++)); do
  write_start_script "b2bua-$i" "$b2bua_bin" --listen="${inst[i - 1]}" \
    --metrics_listen="${mets[i - 1]}" --config="$run_dir/b2bua-$i.yaml" --shards="$shards"
done
write_start_script kamailio kamailio -f "$cfg_dir/kamailio-front.cfg" -DD -E \
  -n "$children" -m 64 -M 8 -x tlsf -X tlsf -Y "$run_dir" \
  -A WITH_CTL --substdef "!CTL_SOCKET!$run_dir/kamailio.ctl!g" \
  --substdef "!FRONT_IP!$(ip_of "$front")!g" --substdef "!FRONT_PORT!$(port_of "$front")!g" \
  --substdef "!DS_LIST!$run_dir/dispatcher.list!g" --substdef "!ALL_SET!$all_set!g" \
  --substdef "!LOG_LEVEL!$front_log_level!g"

started=yes
if [ "$with_redis" = yes ]; then
  "$run_dir/start-redis.sh"
  wait_for redis "$run_dir/redis.pid" 10 \
    redis-cli -h "$(ip_of "$redis")" -p "$(port_of "$redis")" ping
fi
if [ "$with_instances" = yes ]; then
  for ((i = 1; i <= n; i++)); do "$run_dir/start-b2bua-$i.sh"; done
  for ((i = 1; i <= n; i++)); do
    wait_for "b2bua-$i" "$run_dir/b2bua-$i.pid" 10 curl -sf "http://${mets[i - 1]}/readyz"
  done
fi
if [ "$with_front" = yes ]; then
  "$run_dir/start-kamailio.sh"
  # -DD: the process the start script started stays the main one, its pid is the one to stop.
  wait_for kamailio "$run_dir/kamailio.pid" 10 udp_bound "$front"
fi

{
  echo "RUN_DIR=$run_dir"
  echo "FRONT=$front"
  echo "REDIS=$redis"
  echo "CALLEE=$callee"
  echo "ALL_SET=$all_set"
  echo "INSTANCES=$(IFS=,; echo "${inst[*]}")"
  echo "METRICS=$(IFS=,; echo "${mets[*]}")"
} >"$run_dir/cluster.env"

# --- what runs where -------------------------------------------------------------------

state() { if [ "$1" = yes ]; then echo "started"; else echo "not started (--no-$2)"; fi; }
echo "cluster in $run_dir"
echo "  front     sip:$front (Kamailio, $(state "$with_front" front)), log kamailio.log"
for ((i = 1; i <= n; i++)); do
  echo "  b2bua-$i   sip:${inst[i - 1]}, metrics http://${mets[i - 1]}/metrics ($(state "$with_instances" instances)), log b2bua-$i.log"
done
echo "  redis     $redis ($(state "$with_redis" redis))"
echo "  callee    sip:$callee (start it yourself, see below)"
cat <<EOF

A test call through the front (from the repository root):
  callee:  sipp -sf tests/sipp/uas-answer-200.xml -i $(ip_of "$callee") -p $(port_of "$callee")
  caller:  sipp -sf tests/sipp/uac-basic-call-caller-hangup.xml -i 127.0.0.1 -p 5080 \\
             -key dest $front -s 1000 -d 5000 -m 1 $front
Crash the instance that took the call during its 5 s (kill -9 \$(cat $run_dir/b2bua-<i>.pid);
kamailio.log names it with --front-log-level 2): a survivor takes the BYE. Restart it
with $run_dir/start-b2bua-<i>.sh.
Destination states: kamcmd -s unix:$run_dir/kamailio.ctl dispatcher.list
EOF

if [ "$wait_mode" = no ]; then
  echo "Stop it with: $0 --stop $run_dir"
  exit 0
fi

echo "Ctrl-C stops everything."
# Report pieces going down and coming back (a killed instance may be restarted with its
# start script); the run ends with Ctrl-C, or when the front exits.
declare -A was_up=()
while :; do
  for pidfile in "$run_dir"/*.pid; do
    [ -f "$pidfile" ] || continue
    name=$(basename "$pidfile" .pid)
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      [ "${was_up[$name]:-yes}" = yes ] || echo "$(date +%T) $name is up again (pid $pid)"
      was_up[$name]=yes
      continue
    fi
    if [ "${was_up[$name]:-yes}" = yes ]; then
      echo "$(date +%T) $name is down; the end of its log:"
      tail -n 5 "$run_dir/$name.log" | sed 's/^/    /' || true
    fi
    was_up[$name]=no
    if [ "$name" = kamailio ]; then
      echo "run-cluster.sh: the front exited" >&2
      exit 1
    fi
  done
  sleep 1
done
