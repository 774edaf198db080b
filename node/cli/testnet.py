"""``opus testnet``: a local testnet of N validator processes on 127.0.0.1, in one command.

    opus testnet --validators 4 [--base-dir DIR] [--slot-ms 2000] [--base-port P]
    opus testnet status [--base-dir DIR]

The launcher writes into the base dir (a kept temporary directory by default):

    spec.json           the chain spec: ``local_spec(N, slot_ms)`` (validators alice, bob, …)
    nodeI.key           node I's libp2p node key (hex), so every peer id is known up front
    nodeI/              node I's base path (database, finality vote record)
    nodeI.log           node I's log (stdout and stderr)
    testnet.json        the manifest: every node's ports, peer id, PID and command line

and starts one ``opus`` process per validator (``python -m node.cli --chain spec.json
--base-path DIR/nodeI --<dev key> --listen-addr /ip4/127.0.0.1/tcp/PORT --bootnodes <the
others>``). It then supervises them: Ctrl-C or SIGTERM sends SIGINT to every node, waits
for it to stop (SIGKILL after :data:`STOP_TIMEOUT_S`) and exits 0. Started again on the
same base dir it resumes the same chain with the same node keys.

``status`` reads the manifest and asks each node over JSON-RPC for its best and
finalized blocks, printed side by side; a node that does not answer is marked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.commands.arguments import number_in_range
from client.display import safe_text
from node.cli.common import UserError

MAX_VALIDATORS = 6
DEFAULT_SLOT_MS = 2000
MIN_SLOT_MS, MAX_SLOT_MS = 100, 600_000
MANIFEST = "testnet.json"
SPEC_FILE = "spec.json"
TEMP_PREFIX = "opus-testnet-"
HOST = "127.0.0.1"
STOP_TIMEOUT_S = 20.0
STARTUP_TIMEOUT_S = 60.0
POLL_S = 0.25
RPC_TIMEOUT_S = 3.0
# The folder holding the ``node`` package: on the nodes' PYTHONPATH, so that
# ``python -m node.cli`` runs this very code, installed or not.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class TestnetError(UserError):
    """Printed as ``Error: …`` by the command dispatcher (exit 1)."""


# ---------------------------------------------------------------------------
# arguments


_validators = number_in_range("a number of validators", 1, MAX_VALIDATORS,
                              note="one per dev key, alice … ferdie")
_slot_ms = number_in_range("a slot duration in ms", MIN_SLOT_MS, MAX_SLOT_MS)
_base_port = number_in_range("a base port", 1024, 65535 - 3 * MAX_VALIDATORS,
                             note="three ports per node from it")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``testnet`` (and ``testnet status``) on the ``opus`` subcommands."""
    p = sub.add_parser(
        "testnet", help="run a local testnet of N validator processes (or show its status)",
        usage="opus testnet [--validators N] [--base-dir DIR] [--slot-ms MS] [--base-port P]\n"
              "       opus testnet status [--base-dir DIR]",
        description="Start N validators (dev keys alice, bob, …) on 127.0.0.1, each the "
                    "others' boot node, with a log per node; Ctrl-C stops them all. "
                    "'opus testnet status' shows their best and finalized blocks.")
    p.add_argument("--validators", type=_validators, default=4, metavar="N",
                   help=f"number of validators, 1 to {MAX_VALIDATORS} (default 4)")
    p.add_argument("--base-dir", metavar="DIR",
                   help="where the spec, node keys, databases and logs go "
                        "(default: a new temporary directory, kept)")
    p.add_argument("--slot-ms", type=_slot_ms, default=DEFAULT_SLOT_MS, metavar="MS",
                   help=f"slot duration in milliseconds (default {DEFAULT_SLOT_MS})")
    p.add_argument("--base-port", type=_base_port, metavar="P",
                   help="node I (from 0) uses p2p port P+3I, RPC P+3I+1 and Prometheus P+3I+2 "
                        "(default: free ports chosen by the system)")
    status_sub = p.add_subparsers(dest="testnet_command", metavar="status")
    s = status_sub.add_parser("status", help="best and finalized blocks of every node")
    s.add_argument("--base-dir", metavar="DIR", default=argparse.SUPPRESS,
                   help="the testnet's base dir (default: the newest temporary one)")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "testnet_command", None) == "status":
        return status(args)
    return launch(args)


# ---------------------------------------------------------------------------
# the manifest


@dataclass
class NodeEntry:
    name: str
    key: str  # the dev key: alice, bob, …
    base_path: str
    p2p_port: int
    rpc_port: int
    prometheus_port: int
    peer_id: str
    node_key_file: str
    log: str
    command: list[str]
    pid: int | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://{HOST}:{self.rpc_port}"

    @property
    def multiaddr(self) -> str:
        return f"/ip4/{HOST}/tcp/{self.p2p_port}/p2p/{self.peer_id}"


def read_manifest(base_dir: Path) -> dict[str, Any]:
    path = base_dir / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TestnetError(f"no testnet in {base_dir} (no {MANIFEST}; wrong --base-dir?)") \
            from None
    except (OSError, json.JSONDecodeError) as e:
        raise TestnetError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise TestnetError(f"{path} is not a testnet manifest")
    return data


def nodes_of(manifest: dict[str, Any]) -> list[NodeEntry]:
    try:
        entries = [NodeEntry(**entry) for entry in manifest["nodes"]]
    except TypeError as e:
        raise TestnetError(f"the testnet manifest is malformed: {e}") from None
    for i, entry in enumerate(entries):
        _check_entry(entry, i)
    return entries


def _check_entry(entry: NodeEntry, index: int) -> None:
    """A manifest is read back from a file (by default one found in the shared temporary
    directory): a field of the wrong type is a named error, not a crash later on."""
    texts = ("name", "key", "base_path", "peer_id", "node_key_file", "log")
    wrong = [name for name in texts if not isinstance(getattr(entry, name), str)]
    wrong += [name for name in ("p2p_port", "rpc_port", "prometheus_port")
              if not _is_int(getattr(entry, name)) or not 0 <= getattr(entry, name) <= 65535]
    if entry.pid is not None and not _is_int(entry.pid):
        wrong.append("pid")
    if not isinstance(entry.command, list) or not all(isinstance(c, str) for c in entry.command):
        wrong.append("command")
    if wrong:
        raise TestnetError(f"the testnet manifest is malformed: nodes[{index}] has a wrong "
                           f"{', '.join(wrong)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _write_manifest(base_dir: Path, manifest: dict[str, Any]) -> None:
    temp = base_dir / (MANIFEST + ".tmp")
    temp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temp, base_dir / MANIFEST)


def _alive(pid: Any) -> bool:
    """Whether process ``pid`` (read from a manifest: anything) exists; signal 0 sends nothing."""
    if not _is_int(pid) or pid <= 0:  # 0 and negative numbers name process groups
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------
# launch


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            taken.add(port)
            return port


def _check_port(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise TestnetError(f"port {port} on {HOST} is not free ({e.strerror or e}); "
                               f"choose another --base-port") from None


def _prepare_spec(base_dir: Path, validators: int, slot_ms: int) -> Path:
    from genesis.spec import local_spec, spec_to_json

    document = spec_to_json(local_spec(validators, slot_ms))
    path = base_dir / SPEC_FILE
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TestnetError(f"cannot read {path}: {e}") from None
        if existing != document:
            raise TestnetError(f"{base_dir} holds a testnet with another chain spec (other "
                               f"--validators or --slot-ms?); choose another --base-dir")
    else:
        path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _node_key(path: Path) -> str:
    """The peer id of the key in ``path``, created there first if missing."""
    from node import nodekey

    if not path.exists():
        nodekey.write_key_file(path, nodekey.generate())
    return nodekey.peer_id(nodekey.read_key_file(path))


def plan(base_dir: Path, validators: int, slot_ms: int,
         base_port: int | None) -> tuple[Path, list[NodeEntry]]:
    """Write the spec and node keys; the nodes to start (ports, peer ids, command lines)."""
    from runtime.crypto import DEV_ACCOUNT_NAMES

    spec = _prepare_spec(base_dir, validators, slot_ms)
    taken: set[int] = set()
    entries = []
    for i in range(validators):
        if base_port is not None:
            ports = [base_port + 3 * i + k for k in range(3)]
            for port in ports:
                _check_port(port)
        else:
            ports = [_free_port(taken) for _ in range(3)]
        name = f"node{i + 1}"
        key_file = base_dir / f"{name}.key"
        entries.append(NodeEntry(
            name=name, key=DEV_ACCOUNT_NAMES[i], base_path=str(base_dir / name),
            p2p_port=ports[0], rpc_port=ports[1], prometheus_port=ports[2],
            peer_id=_node_key(key_file), node_key_file=str(key_file),
            log=str(base_dir / f"{name}.log"), command=[]))
    for entry in entries:
        others = [e.multiaddr for e in entries if e is not entry]
        entry.command = node_command(spec, entry, others)
    return spec, entries


def node_command(spec: Path, entry: NodeEntry, bootnodes: list[str]) -> list[str]:
    command = [
        sys.executable, "-m", "node.cli",
        "--chain", str(spec),
        "--base-path", entry.base_path,
        f"--{entry.key}",
        "--name", entry.name,
        "--port", str(entry.p2p_port),
        "--listen-addr", f"/ip4/{HOST}/tcp/{entry.p2p_port}",
        "--rpc-port", str(entry.rpc_port),
        "--prometheus-port", str(entry.prometheus_port),
        "--node-key-file", entry.node_key_file,
    ]
    if bootnodes:
        command += ["--bootnodes", *bootnodes]
    return command


def _child_setup() -> None:  # pragma: no cover - runs in the child
    """In the child: its own process group (a terminal's Ctrl-C reaches only the launcher,
    which then stops every node once), and SIGTERM if the launcher dies (Linux)."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def node_env() -> dict[str, str]:
    """The nodes' environment: the launcher's, unbuffered, the project first on the path."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def _start(entry: NodeEntry) -> subprocess.Popen[bytes]:
    with open(entry.log, "ab") as log_file:
        return subprocess.Popen(entry.command, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, env=node_env(),
                                preexec_fn=_child_setup)


def _rpc(url: str, method: str, params: list[Any] | None = None,
         timeout: float = RPC_TIMEOUT_S) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                       "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        error = answer["error"]
        if isinstance(error, dict):  # the node's own words, escaped where they are shown
            error = f"{error.get('message')}: {error.get('data')} (code {error.get('code')})"
        raise RuntimeError(f"{method}: {error}")
    return answer["result"]


def _tail(path: str, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def launch(args: argparse.Namespace) -> int:
    if args.base_dir:
        base_dir = Path(args.base_dir).expanduser().resolve()
        base_dir.mkdir(parents=True, exist_ok=True)
    else:
        base_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX)).resolve()
    if (base_dir / MANIFEST).exists():
        previous = read_manifest(base_dir)
        if _alive(previous.get("pid")) and previous.get("pid") != os.getpid():
            raise TestnetError(f"a testnet is already running in {base_dir} "
                               f"(launcher PID {previous['pid']}); stop it first")
    spec, entries = plan(base_dir, args.validators, args.slot_ms, args.base_port)
    manifest: dict[str, Any] = {
        "pid": os.getpid(), "validators": args.validators, "slotMs": args.slot_ms,
        "spec": str(spec), "baseDir": str(base_dir), "startedAt": int(time.time()),
        "nodes": [],
    }
    stop: list[int] = []  # the signals received; the loops below check it

    def on_signal(signum: int, frame: object) -> None:
        stop.append(signum)
        if len(stop) > 2:  # a third Ctrl-C: do not wait for the nodes any longer
            raise KeyboardInterrupt

    previous_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        print(f"Opus local testnet: {args.validators} validators, {args.slot_ms} ms slots",
              flush=True)
        print(f"Base dir: {base_dir}  (chain spec {spec.name}, logs nodeI.log)", flush=True)
        for entry in entries:
            procs[entry.name] = proc = _start(entry)
            entry.pid = proc.pid
        manifest["nodes"] = [vars(e) for e in entries]
        _write_manifest(base_dir, manifest)
        width = max(len(e.name) for e in entries)
        for entry in entries:
            print(f"  {entry.name:<{width}}  {entry.key:<7}  RPC {entry.rpc_url}  "
                  f"peer id {entry.peer_id}  p2p {HOST}:{entry.p2p_port}", flush=True)
        code = 0
        if _wait_until_up(entries, procs, stop):
            print(f"All {len(entries)} nodes are up. Status: opus testnet status --base-dir "
                  f"{base_dir}   Stop: Ctrl-C", flush=True)
            code = _supervise(entries, procs, stop)
        if stop:
            print("Stopping the testnet…", flush=True)
        _stop_all(entries, procs)
        if stop:
            print("Testnet stopped.", flush=True)
        return code
    except BaseException:
        _stop_all(entries, procs, quiet=True)
        raise
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


def _wait_until_up(entries: list[NodeEntry], procs: dict[str, subprocess.Popen[bytes]],
                   stop: list[int]) -> bool:
    """Wait until every node answers JSON-RPC (False if stopped first); a node that exits
    while starting stops the testnet."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    pending = {e.name: e for e in entries}
    while pending and not stop:
        for name, entry in list(pending.items()):
            code = procs[name].poll()
            if code is not None:
                raise TestnetError(f"{name} exited with code {code} while starting; the end of "
                                   f"{entry.log}:\n{_tail(entry.log)}")
            try:
                _rpc(entry.rpc_url, "system_health", timeout=1.0)
            except (OSError, urllib.error.URLError, ValueError, RuntimeError):
                continue
            del pending[name]
        if pending and time.monotonic() > deadline:
            raise TestnetError(f"{', '.join(pending)} did not answer JSON-RPC within "
                               f"{STARTUP_TIMEOUT_S:.0f} s; see the logs in "
                               f"{Path(entries[0].log).parent}")
        if pending:
            time.sleep(POLL_S)
    return not stop


def _supervise(entries: list[NodeEntry], procs: dict[str, subprocess.Popen[bytes]],
               stop: list[int]) -> int:
    """Report nodes that exit; 0 once stopped by a signal, 1 if every node exited."""
    reported: set[str] = set()
    while not stop:
        for entry in entries:
            code = procs[entry.name].poll()
            if code is not None and entry.name not in reported:
                reported.add(entry.name)
                how = f"signal {-code}" if code < 0 else f"code {code}"
                print(f"{entry.name} (PID {entry.pid}) exited with {how}; see {entry.log}",
                      flush=True)
        if len(reported) == len(entries):
            print("Every node has exited.", flush=True)
            return 1
        time.sleep(POLL_S)
    return 0


def _stop_all(entries: list[NodeEntry], procs: dict[str, subprocess.Popen[bytes]], *,
              quiet: bool = False) -> None:
    """SIGINT to every running node, wait, SIGKILL whatever is left after the timeout."""
    running = [(e, procs[e.name]) for e in entries if e.name in procs]
    for _entry, proc in running:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for entry, proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if not quiet:
                print(f"{entry.name} (PID {proc.pid}) did not stop within "
                      f"{STOP_TIMEOUT_S:.0f} s: killing it", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
            for _e, p in running:
                if p.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGKILL)
            raise


# ---------------------------------------------------------------------------
# status


def _newest_temp_testnet() -> Path:
    root = Path(tempfile.gettempdir())
    found = [p for p in root.glob(TEMP_PREFIX + "*") if (p / MANIFEST).is_file()]
    if not found:
        raise TestnetError(f"no testnet found in {root}; pass --base-dir")
    return max(found, key=lambda p: (p / MANIFEST).stat().st_mtime)


def node_status(entry: NodeEntry) -> dict[str, Any]:
    """Best and finalized block of one node over JSON-RPC; ``reachable`` False if it fails."""
    url = entry.rpc_url
    try:
        best_hash = _rpc(url, "chain_getBlockHash")
        best = _rpc(url, "chain_getHeader", [best_hash])
        finalized_hash = _rpc(url, "chain_getFinalizedHead")
        finalized = _rpc(url, "chain_getHeader", [finalized_hash])
        health = _rpc(url, "system_health")
        info = {
            "name": entry.name, "reachable": True,
            "best": int(best["number"], 16), "bestHash": str(best_hash),
            "finalized": int(finalized["number"], 16), "finalizedHash": str(finalized_hash),
            "peers": health.get("peers"), "syncing": health.get("isSyncing"),
        }
    # A node whose answers have the wrong shape counts as unreachable, with the reason.
    except (OSError, urllib.error.URLError, ValueError, RuntimeError, KeyError, TypeError,
            AttributeError) as e:
        reason = getattr(e, "reason", None) or e
        return {"name": entry.name, "reachable": False, "error": str(reason)}
    return info


def _short(block_hash: str) -> str:
    return f"{block_hash[:6]}…{block_hash[-4:]}"


def status(args: argparse.Namespace) -> int:
    given = getattr(args, "base_dir", None)
    base_dir = Path(given).expanduser().resolve() if given else _newest_temp_testnet()
    manifest = read_manifest(base_dir)
    entries = nodes_of(manifest)
    launcher = manifest.get("pid")
    # The manifest (found in a shared temporary directory by default) and the nodes'
    # answers are untrusted: every line is made safe for the terminal before it is shown.
    _show(f"Testnet in {base_dir}: {len(entries)} validators, {manifest.get('slotMs')} ms "
          f"slots, launcher PID {launcher} {'running' if _alive(launcher) else 'not running'}")
    width = max([len(safe_text(entry.name)) for entry in entries] + [4])  # as shown
    _show(f"{'node':<{width}}  {'RPC':<22}  {'best':>20}  {'finalized':>20}  peers")
    for entry in entries:
        info = node_status(entry)
        name = entry.name + " " * (width - len(safe_text(entry.name)))  # padded as shown
        if not info["reachable"]:
            state = "running" if _alive(entry.pid) else "not running"
            _show(f"{name}  {entry.rpc_url:<22}  UNREACHABLE ({state}: "
                  f"{info['error']})")
            continue
        best = f"#{info['best']} ({_short(info['bestHash'])})"
        final = f"#{info['finalized']} ({_short(info['finalizedHash'])})"
        syncing = "  syncing" if info["syncing"] else ""
        _show(f"{name}  {entry.rpc_url:<22}  {best:>20}  {final:>20}  "
              f"{info['peers']}{syncing}")
    return 0


def _show(line: str) -> None:
    """Print one line of ``status``, its untrusted parts escaped (:mod:`client.display`)."""
    print(safe_text(line))
