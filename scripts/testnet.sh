#!/usr/bin/env bash
# A local Opus testnet of N validators, with plain `opus` processes (what `opus testnet` does).
#
#   scripts/testnet.sh [-n N] [-d DIR] [-s SLOT_MS] [-p BASE_PORT]
#
#   -n N          validators, 1 to 6: dev keys alice, bob, charlie, dave, eve, ferdie (default 4)
#   -d DIR        base dir for the spec, node keys, databases and logs (default: a new temp dir)
#   -s SLOT_MS    slot duration in milliseconds (default 2000)
#   -p BASE_PORT  node I (from 0) uses p2p BASE_PORT+3I, RPC +1, Prometheus +2 (default: free ports)
#
# Every node listens on 127.0.0.1 only, has the others as boot nodes and logs to DIR/nodeI.log.
# Ctrl-C (or SIGTERM) stops them all: SIGTERM to each, SIGKILL after 20 s. The base dir gets the
# same testnet.json manifest as `opus testnet`, so `opus testnet status --base-dir DIR` works.
# The `opus` command used: $OPUS if set (e.g. OPUS=opus), else the repository's venv.
set -euo pipefail

usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }

N=4
BASE_DIR=""
SLOT_MS=2000
BASE_PORT=""
while getopts "n:d:s:p:h" opt; do
    case "$opt" in
        n) N="$OPTARG" ;;
        d) BASE_DIR="$OPTARG" ;;
        s) SLOT_MS="$OPTARG" ;;
        p) BASE_PORT="$OPTARG" ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || { echo "Error: unexpected argument: $1" >&2; exit 2; }
[[ "$N" =~ ^[1-6]$ ]] || { echo "Error: -n takes 1 to 6 validators, not '$N'" >&2; exit 1; }
[[ "$SLOT_MS" =~ ^[0-9]+$ ]] && (( SLOT_MS >= 100 )) ||
    { echo "Error: -s takes a slot of at least 100 ms, not '$SLOT_MS'" >&2; exit 1; }
if [[ -n "$BASE_PORT" ]]; then
    [[ "$BASE_PORT" =~ ^[0-9]+$ ]] && (( BASE_PORT >= 1024 && BASE_PORT + 3 * N <= 65535 )) ||
        { echo "Error: -p takes a port from 1024, not '$BASE_PORT'" >&2; exit 1; }
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n "${OPUS:-}" ]]; then read -r -a OPUS_CMD <<< "$OPUS"; else OPUS_CMD=("$PY" -m node.cli); fi
opus() { "${OPUS_CMD[@]}" "$@"; }

if [[ -z "$BASE_DIR" ]]; then
    BASE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/opus-testnet-XXXXXXXX")"
fi
mkdir -p "$BASE_DIR"
BASE_DIR="$(cd "$BASE_DIR" && pwd)"
SPEC="$BASE_DIR/spec.json"
KEYS=(alice bob charlie dave eve ferdie)
HOST=127.0.0.1

# The chain spec: local_spec(N, SLOT_MS), as `opus testnet` writes it (kept on a restart).
if [[ ! -f "$SPEC" ]]; then
    "$PY" -c 'import json, sys
from genesis.spec import local_spec, spec_to_json
print(json.dumps(spec_to_json(local_spec(int(sys.argv[1]), int(sys.argv[2]))), indent=2))' \
        "$N" "$SLOT_MS" > "$SPEC"
fi

# Ports: BASE_PORT+3I.. or free ports from the system.
if [[ -n "$BASE_PORT" ]]; then
    PORTS=()
    for ((k = 0; k < 3 * N; k++)); do PORTS+=($((BASE_PORT + k))); done
else
    read -r -a PORTS <<< "$("$PY" -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' $((3 * N)))"
fi

# Node keys (kept on a restart) and their peer ids, known before anything starts.
NAMES=() PEERS=() ADDRS=()
for ((i = 0; i < N; i++)); do
    name="node$((i + 1))"
    key="$BASE_DIR/$name.key"
    [[ -f "$key" ]] || opus key generate-node-key --file "$key" 2>/dev/null
    peer="$(opus key inspect-node-key --file "$key")"
    NAMES+=("$name") PEERS+=("$peer")
    ADDRS+=("/ip4/$HOST/tcp/${PORTS[3 * i]}/p2p/$peer")
done

PIDS=()
STOPPED=0
stop_all() {
    (( STOPPED )) && return
    STOPPED=1
    local pid waited=0
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && (( waited < 200 )); do sleep 0.1; waited=$((waited + 1)); done
        if kill -0 "$pid" 2>/dev/null; then
            echo "PID $pid did not stop within 20 s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}
trap 'echo "Stopping the testnet…"; stop_all; echo "Testnet stopped."; exit 0' INT TERM
trap stop_all EXIT

set -m  # every node in its own process group: a terminal's Ctrl-C reaches only this script
echo "Opus local testnet: $N validators, $SLOT_MS ms slots"
echo "Base dir: $BASE_DIR  (chain spec spec.json, logs nodeI.log)"
ENTRIES=()
for ((i = 0; i < N; i++)); do
    name="${NAMES[i]}" p2p="${PORTS[3 * i]}" rpc="${PORTS[3 * i + 1]}" prom="${PORTS[3 * i + 2]}"
    boot=()
    for ((j = 0; j < N; j++)); do (( j == i )) || boot+=("${ADDRS[j]}"); done
    cmd=("${OPUS_CMD[@]}" --chain "$SPEC" --base-path "$BASE_DIR/$name" "--${KEYS[i]}"
         --name "$name" --port "$p2p" --listen-addr "/ip4/$HOST/tcp/$p2p"
         --rpc-port "$rpc" --prometheus-port "$prom" --node-key-file "$BASE_DIR/$name.key")
    (( ${#boot[@]} )) && cmd+=(--bootnodes "${boot[@]}")
    PYTHONUNBUFFERED=1 "${cmd[@]}" < /dev/null >> "$BASE_DIR/$name.log" 2>&1 &
    PIDS+=($!)
    printf '  %-6s %-8s RPC http://%s:%s  peer id %s  p2p %s:%s\n' \
        "$name" "${KEYS[i]}" "$HOST" "$rpc" "${PEERS[i]}" "$HOST" "$p2p"
    json_cmd="$(printf '"%s", ' "${cmd[@]}")"
    ENTRIES+=("$(printf '{"name": "%s", "key": "%s", "base_path": "%s", "p2p_port": %s, "rpc_port": %s, "prometheus_port": %s, "peer_id": "%s", "node_key_file": "%s", "log": "%s", "command": [%s], "pid": %s}' \
        "$name" "${KEYS[i]}" "$BASE_DIR/$name" "$p2p" "$rpc" "$prom" "${PEERS[i]}" \
        "$BASE_DIR/$name.key" "$BASE_DIR/$name.log" "${json_cmd%, }" "$!")")
done
set +m
{
    printf '{"pid": %s, "validators": %s, "slotMs": %s, "spec": "%s", "baseDir": "%s", "nodes": [\n' \
        "$$" "$N" "$SLOT_MS" "$SPEC" "$BASE_DIR"
    (IFS=$'\n'; sed '$!s/$/,/' <<< "${ENTRIES[*]}")
    printf ']}\n'
} > "$BASE_DIR/testnet.json.tmp"
mv "$BASE_DIR/testnet.json.tmp" "$BASE_DIR/testnet.json"  # readers never see half a manifest
echo "Status: opus testnet status --base-dir $BASE_DIR   Stop: Ctrl-C"

# Supervise: report nodes that exit; end when all have (or on Ctrl-C / SIGTERM, by the trap).
declare -A REPORTED=()
while (( ${#REPORTED[@]} < N )); do
    wait -n 2>/dev/null || true
    for ((i = 0; i < N; i++)); do
        if [[ -z "${REPORTED[$i]:-}" ]] && ! kill -0 "${PIDS[i]}" 2>/dev/null; then
            REPORTED[$i]=1
            echo "${NAMES[i]} (PID ${PIDS[i]}) exited; see $BASE_DIR/${NAMES[i]}.log"
        fi
    done
done
echo "Every node has exited."
exit 1
