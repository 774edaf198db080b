"""``opus testnet``: a local testnet of N validator processes on 127.0.0.1, in one command.

    opus testnet --validators 4 [--base-dir DIR] [--slot-ms MS] [--base-port P]
    opus testnet status [--base-dir DIR]

Each validator gets a freshly generated key (a BIP-39 phrase, :func:`client.keys.
generate_phrase`), put into its own keystore (``nodeI/keystore``, plain files readable by
this user only, as ``opus key insert`` writes them); the dev keys are not used. The
launcher writes into the base dir (a kept temporary directory by default):

    spec.json           the chain spec: the N generated authorities, a generated sudo key,
                        the dev accounts, sudo and validators endowed, and every node as a
                        boot node (``bootNodes``, rewritten with the ports of each launch)
    sudo.json           the sudo account's key file (plain, 0600): for ``opus sudo … --key``
    nodeI.key           node I's libp2p node key (hex), so every peer id is known up front
    nodeI/              node I's base path (database, keystore, finality vote record)
    nodeI.log           node I's log (stdout and stderr)
    testnet.json        the manifest: every node's ports, peer id, PID and command line

and starts one ``opus`` process per validator (``python -m node.cli --chain spec.json
--base-path DIR/nodeI --validator --listen-addr /ip4/127.0.0.1/tcp/PORT``: its boot nodes
come from the spec). It then supervises them: Ctrl-C or SIGTERM sends SIGINT to every node,
waits for it to stop (SIGKILL after :data:`STOP_TIMEOUT_S`) and exits 0. Started again on
the same base dir it resumes the same chain with the same keys. The slot duration, unless
``--slot-ms`` is given, grows with N (:func:`default_slot_ms`) so that N Python nodes fit
this 2-core machine.

The base dir of the last launch is remembered in ``<data dir>/last-testnet``
(``$XDG_DATA_HOME/opus``, default ``~/.local/share/opus``), so ``status`` finds it
without ``--base-dir``. ``status`` reads the manifest and asks each node over JSON-RPC
for its best and finalized blocks, printed side by side with the finality lag (flagged
past :data:`node.informant.FINALITY_LAG_WARNING_BLOCKS`), its peers and its dialable
address; a node that does not answer is marked.
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
from typing import TYPE_CHECKING, Any

from client.commands.arguments import number_in_range
from client.display import safe_text
from node.cli.common import UserError, data_dir
from node.informant import FINALITY_LAG_WARNING_BLOCKS

if TYPE_CHECKING:
    from genesis.spec import ChainSpec
    from runtime.crypto import Keypair

MAX_VALIDATORS = 32
# The default slot for N validators: (up to N, slot ms). Each idle Python validator costs
# a share of one of this machine's two cores, more with more peers (py-libp2p's gossip
# machinery, votes from every authority): 7 validators at 2 s slots already used both
# cores and missed slots, at 3 s 1.6 cores; 10 at 3 s saturated them, at 6 s finality
# followed within 1.2 slots (docs/performance.md, "Local testnet"). Past 12 the nodes
# need more than two cores whatever the slot: the larger sizes are for bigger machines.
# --slot-ms overrides.
SLOT_MS_BY_SIZE = ((4, 1000), (7, 3000), (12, 6000), (20, 8000), (MAX_VALIDATORS, 12000))
MIN_SLOT_MS, MAX_SLOT_MS = 100, 600_000
MANIFEST = "testnet.json"
SPEC_FILE = "spec.json"
SUDO_KEY_FILE = "sudo.json"
LAST_TESTNET = "last-testnet"  # in data_dir(): the base dir of the last launch
TESTNET_ID = "opus_testnet"
TEMP_PREFIX = "opus-testnet-"
HOST = "127.0.0.1"
STOP_TIMEOUT_S = 20.0
# Starting N Python processes at once on two cores: each needs a few CPU seconds to import.
STARTUP_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_PER_NODE_S = 5.0
POLL_S = 0.25
RPC_TIMEOUT_S = 3.0
# The folder holding the ``node`` package: on the nodes' PYTHONPATH, so that
# ``python -m node.cli`` runs this very code, installed or not.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class TestnetError(UserError):
    """Printed as ``Error: …`` by the command dispatcher (exit 1)."""


# ---------------------------------------------------------------------------
# arguments


_validators = number_in_range("a number of validators", 1, MAX_VALIDATORS)
_slot_ms = number_in_range("a slot duration in ms", MIN_SLOT_MS, MAX_SLOT_MS)
_base_port = number_in_range("a base port", 1024, 65535 - 3 * MAX_VALIDATORS,
                             note="three ports per node from it")


def default_slot_ms(validators: int) -> int:
    """The slot duration ``opus testnet`` uses for ``validators`` nodes on one machine."""
    return next(slot for size, slot in SLOT_MS_BY_SIZE if validators <= size)


def _validators_text(count: int) -> str:
    return f"{count} validator{'' if count == 1 else 's'}"


def startup_timeout(validators: int) -> float:
    return STARTUP_TIMEOUT_S + STARTUP_TIMEOUT_PER_NODE_S * validators


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``testnet`` (and ``testnet status``) on the ``opus`` subcommands."""
    p = sub.add_parser(
        "testnet", help="run a local testnet of N validator processes (or show its status)",
        usage="opus testnet [--validators N] [--base-dir DIR] [--slot-ms MS] [--base-port P]\n"
              "       opus testnet status [--base-dir DIR]",
        description="Start N validators with freshly generated keys (in each node's "
                    "keystore) on 127.0.0.1, every node a boot node in the chain spec, with "
                    "a log per node; Ctrl-C stops them all. 'opus testnet status' shows "
                    "their best and finalized blocks.")
    p.add_argument("--validators", type=_validators, default=4, metavar="N",
                   help=f"number of validators, 1 to {MAX_VALIDATORS} (default 4)")
    p.add_argument("--base-dir", metavar="DIR",
                   help="where the spec, keys, databases and logs go "
                        "(default: a new temporary directory, kept)")
    sizes = ", ".join(f"{slot} up to {size}" for size, slot in SLOT_MS_BY_SIZE)
    p.add_argument("--slot-ms", type=_slot_ms, metavar="MS",
                   help=f"slot duration in milliseconds (default by N: {sizes}; "
                        "a resumed testnet keeps its own)")
    p.add_argument("--base-port", type=_base_port, metavar="P",
                   help="node I (from 0) uses p2p port P+3I, RPC P+3I+1 and Prometheus P+3I+2 "
                        "(default: free ports chosen by the system)")
    status_sub = p.add_subparsers(dest="testnet_command", metavar="status")
    s = status_sub.add_parser("status", help="best and finalized blocks of every node")
    s.add_argument("--base-dir", metavar="DIR", default=argparse.SUPPRESS,
                   help="the testnet's base dir (default: the last one launched, else the "
                        "newest temporary one)")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "testnet_command", None) == "status":
        return status(args)
    return launch(args)


# ---------------------------------------------------------------------------
# the manifest


@dataclass
class NodeEntry:
    name: str
    key: str  # the validator's authority key, as an address
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


@dataclass(frozen=True)
class Plan:
    """What a launch starts: the spec file, the nodes, the slot and the sudo account."""

    spec: Path
    entries: list[NodeEntry]
    slot_ms: int
    sudo: str  # address
    sudo_key_file: Path
    resumed: bool


def _keystore(base_path: Path) -> Any:
    from node.keystore import KEYSTORE_DIR, Keystore

    return Keystore(base_path / KEYSTORE_DIR)


def _new_keys(base_dir: Path, names: list[str]) -> tuple[list[Keypair], Keypair]:
    """A freshly generated key per validator, put into its node's keystore (aura and gran),
    and a sudo key, written to ``sudo.json``; (validator keys, sudo key)."""
    from client.keys import generate_phrase, keypair_from_suri, write_key_file
    from node.keystore import SESSION_KEY_TYPES, KeystoreError

    keys = []
    for name in names:
        key = keypair_from_suri(generate_phrase())
        keystore = _keystore(base_dir / name)
        try:
            for key_type in SESSION_KEY_TYPES:
                keystore.insert(key_type, key)
        except KeystoreError as e:
            raise TestnetError(f"{name}: {e}") from None
        keys.append(key)
    sudo = keypair_from_suri(generate_phrase())
    write_key_file(base_dir / SUDO_KEY_FILE, sudo, password="", overwrite=True)
    return keys, sudo


def _new_spec(validators: list[Keypair], sudo: Keypair, slot_ms: int,
              boot_nodes: list[str]) -> ChainSpec:
    """The testnet's chain: the dev accounts endowed as on the local chain (for creator
    commands with --dev-account), and the sudo and validator accounts too."""
    from genesis.spec import DEV_ENDOWMENT, customized, local_spec

    base = local_spec(1, slot_ms)
    return customized(
        base, name=f"Opus Local Testnet ({len(validators)} validators)", chain_id=TESTNET_ID,
        authorities=[k.public for k in validators],
        balances=[*base.balances, *((k.public, DEV_ENDOWMENT) for k in [sudo, *validators])],
        sudo=sudo.public, boot_nodes=boot_nodes)


def _existing_spec(path: Path, base_dir: Path, names: list[str],
                   slot_ms: int | None) -> ChainSpec:
    """The spec of a testnet launched before in ``base_dir``, checked against the flags and
    against the keys in the nodes' keystores."""
    from genesis.spec import ChainSpecError, load_spec
    from node.keystore import AURA

    try:
        spec = load_spec(str(path))
    except ChainSpecError as e:
        raise TestnetError(f"{e} (in {base_dir}; choose another --base-dir)") from None
    if len(spec.authorities) != len(names):
        raise TestnetError(f"{base_dir} holds a testnet of {len(spec.authorities)} validators, "
                           f"not {len(names)}; choose another --base-dir")
    if slot_ms is not None and slot_ms != spec.slot_duration_ms:
        raise TestnetError(f"{base_dir} holds a testnet with {spec.slot_duration_ms} ms slots, "
                           f"not {slot_ms}; leave out --slot-ms or choose another --base-dir")
    for name, authority in zip(names, spec.authorities, strict=True):
        if not _keystore(base_dir / name).has(AURA, authority):
            raise TestnetError(f"{name}'s keystore ({base_dir / name / 'keystore'}) lacks its "
                               "authority key; this base dir is not a testnet this launcher "
                               "made: choose another --base-dir")
    return spec


def _write_spec(path: Path, spec: ChainSpec) -> None:
    from genesis import build_genesis
    from genesis.spec import spec_to_json

    build_genesis(spec)  # a spec whose genesis cannot be built is refused before it is used
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(spec_to_json(spec), indent=2) + "\n")
    os.replace(temp, path)


def _node_key(path: Path) -> str:
    """The peer id of the key in ``path``, created there first if missing."""
    from node import nodekey

    if not path.exists():
        nodekey.write_key_file(path, nodekey.generate())
    return nodekey.peer_id(nodekey.read_key_file(path))


def plan(base_dir: Path, validators: int, slot_ms: int | None,
         base_port: int | None) -> Plan:
    """Generate the keys (first launch), write the spec with this launch's boot nodes and
    the node keys; the nodes to start (ports, peer ids, command lines)."""
    from genesis.spec import customized
    from runtime.crypto import encode_address

    taken: set[int] = set()
    entries = []
    names = [f"node{i + 1}" for i in range(validators)]
    for i, name in enumerate(names):
        if base_port is not None:
            ports = [base_port + 3 * i + k for k in range(3)]
            for port in ports:
                _check_port(port)
        else:
            ports = [_free_port(taken) for _ in range(3)]
        key_file = base_dir / f"{name}.key"
        entries.append(NodeEntry(
            name=name, key="", base_path=str(base_dir / name),
            p2p_port=ports[0], rpc_port=ports[1], prometheus_port=ports[2],
            peer_id=_node_key(key_file), node_key_file=str(key_file),
            log=str(base_dir / f"{name}.log"), command=[]))
    boot_nodes = [e.multiaddr for e in entries]
    path = base_dir / SPEC_FILE
    resumed = path.exists()
    if resumed:  # the same chain and keys; this launch's ports
        spec = customized(_existing_spec(path, base_dir, names, slot_ms), boot_nodes=boot_nodes)
    else:
        keys, sudo_key = _new_keys(base_dir, names)
        spec = _new_spec(keys, sudo_key, slot_ms or default_slot_ms(validators), boot_nodes)
    _write_spec(path, spec)  # last: a spec in the base dir means its keys are in place
    for entry, authority in zip(entries, spec.authorities, strict=True):
        entry.key = encode_address(authority)
        entry.command = node_command(path, entry)
    assert spec.sudo is not None
    return Plan(path, entries, spec.slot_duration_ms, encode_address(spec.sudo),
                base_dir / SUDO_KEY_FILE, resumed)


def node_command(spec: Path, entry: NodeEntry) -> list[str]:
    """Node I's command line: a validator using its keystore; its boot nodes are the spec's."""
    return [
        sys.executable, "-m", "node.cli",
        "--chain", str(spec),
        "--base-path", entry.base_path,
        "--validator",
        "--name", entry.name,
        "--port", str(entry.p2p_port),
        "--listen-addr", f"/ip4/{HOST}/tcp/{entry.p2p_port}",
        "--rpc-port", str(entry.rpc_port),
        "--prometheus-port", str(entry.prometheus_port),
        "--node-key-file", entry.node_key_file,
    ]


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
    planned = plan(base_dir, args.validators, args.slot_ms, args.base_port)
    spec, entries = planned.spec, planned.entries
    manifest: dict[str, Any] = {
        "pid": os.getpid(), "validators": args.validators, "slotMs": planned.slot_ms,
        "spec": str(spec), "baseDir": str(base_dir), "startedAt": int(time.time()),
        "sudo": planned.sudo, "sudoKeyFile": str(planned.sudo_key_file), "nodes": [],
    }
    stop: list[int] = []  # the signals received; the loops below check it

    def on_signal(signum: int, frame: object) -> None:
        stop.append(signum)
        if len(stop) > 2:  # a third Ctrl-C: do not wait for the nodes any longer
            raise KeyboardInterrupt

    previous_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        keys = "the same chain and keys" if planned.resumed else "freshly generated keys"
        print(f"Opus local testnet: {_validators_text(args.validators)}, {planned.slot_ms} ms "
              f"slots, {keys} (in each node's keystore)", flush=True)
        print(f"Base dir: {base_dir}  (chain spec {spec.name}, logs nodeI.log)", flush=True)
        print(f"Sudo: {planned.sudo}  (key file {planned.sudo_key_file}: opus sudo … --key "
              f"{planned.sudo_key_file} --rpc {entries[0].rpc_url})", flush=True)
        for entry in entries:
            procs[entry.name] = proc = _start(entry)
            entry.pid = proc.pid
        manifest["nodes"] = [vars(e) for e in entries]
        _write_manifest(base_dir, manifest)
        _remember(base_dir)
        width = max(len(e.name) for e in entries)
        for entry in entries:
            print(f"  {entry.name:<{width}}  authority {entry.key}  RPC {entry.rpc_url}  "
                  f"{entry.multiaddr}", flush=True)
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
    timeout = startup_timeout(len(entries))
    deadline = time.monotonic() + timeout
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
                               f"{timeout:.0f} s; see the logs in "
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


def last_testnet_pointer() -> Path:
    """The file holding the base dir of the last testnet launched by this user."""
    return data_dir() / LAST_TESTNET


def _remember(base_dir: Path) -> None:
    """Point ``last-testnet`` at ``base_dir`` (a warning, not a failure, if it cannot)."""
    pointer = last_testnet_pointer()
    try:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        temp = pointer.with_name(pointer.name + f".{os.getpid()}.tmp")
        temp.write_text(str(base_dir) + "\n")
        os.replace(temp, pointer)
    except OSError as e:
        print(f"warning: cannot record this testnet in {pointer} ({e.strerror or e}): "
              f"'opus testnet status' will need --base-dir {base_dir}", flush=True)


def _last_testnet() -> Path | None:
    """The base dir ``last-testnet`` names, if it still holds a testnet."""
    try:
        text = last_testnet_pointer().read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    path = Path(text)
    return path if text and path.is_absolute() and (path / MANIFEST).is_file() else None


def _newest_temp_testnet() -> Path:
    root = Path(tempfile.gettempdir())
    found = [p for p in root.glob(TEMP_PREFIX + "*") if (p / MANIFEST).is_file()]
    if not found:
        raise TestnetError(f"no testnet found: none recorded in {last_testnet_pointer()} and "
                           f"none in {root}; pass --base-dir")
    return max(found, key=lambda p: (p / MANIFEST).stat().st_mtime)


def find_base_dir(given: str | None) -> Path:
    """``--base-dir``, else the last testnet launched, else the newest temporary one (a
    testnet of scripts/testnet.sh)."""
    if given:
        return Path(given).expanduser().resolve()
    return _last_testnet() or _newest_temp_testnet()


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
            "address": _address(entry),
        }
    # A node whose answers have the wrong shape counts as unreachable, with the reason.
    except (OSError, urllib.error.URLError, ValueError, RuntimeError, KeyError, TypeError,
            AttributeError) as e:
        reason = getattr(e, "reason", None) or e
        return {"name": entry.name, "reachable": False, "error": str(reason)}
    return info


def _address(entry: NodeEntry) -> str:
    """The node's own word for where it can be dialled (the first address it listens on),
    else the manifest's."""
    try:
        addresses = _rpc(entry.rpc_url, "system_localListenAddresses")
    except (OSError, urllib.error.URLError, ValueError, RuntimeError):
        return entry.multiaddr
    if isinstance(addresses, list) and addresses and isinstance(addresses[0], str):
        return addresses[0]
    return entry.multiaddr


def _short(block_hash: str) -> str:
    return f"{block_hash[:6]}…{block_hash[-4:]}"


def lag_text(best: int, finalized: int) -> str:
    """The finality lag column: ``best − finalized``, flagged when finality has stalled."""
    lag = best - finalized
    return f"{lag} ⚠️ stalled" if lag > FINALITY_LAG_WARNING_BLOCKS else str(lag)


def status(args: argparse.Namespace) -> int:
    base_dir = find_base_dir(getattr(args, "base_dir", None))
    manifest = read_manifest(base_dir)
    entries = nodes_of(manifest)
    launcher = manifest.get("pid")
    # The manifest (found in a shared temporary directory by default) and the nodes'
    # answers are untrusted: every line is made safe for the terminal before it is shown.
    _show(f"Testnet in {base_dir}: {_validators_text(len(entries))}, {manifest.get('slotMs')} ms "
          f"slots, launcher PID {launcher} {'running' if _alive(launcher) else 'not running'}")
    if manifest.get("sudo"):
        _show(f"Sudo: {manifest.get('sudo')}  (key file {manifest.get('sudoKeyFile')})")
    width = max([len(safe_text(entry.name)) for entry in entries] + [4])  # as shown
    _show(f"{'node':<{width}}  {'RPC':<22}  {'best':>20}  {'finalized':>20}  "
          f"{'lag':>11}  peers  address")
    stalled = 0
    for entry in entries:
        info = node_status(entry)
        name = entry.name + " " * (width - len(safe_text(entry.name)))  # padded as shown
        if not info["reachable"]:
            state = "running" if _alive(entry.pid) else "not running"
            _show(f"{name}  {entry.rpc_url:<22}  UNREACHABLE ({state}: "
                  f"{info['error']})  {entry.multiaddr}")
            continue
        best = f"#{info['best']} ({_short(info['bestHash'])})"
        final = f"#{info['finalized']} ({_short(info['finalizedHash'])})"
        lag = lag_text(info["best"], info["finalized"])
        stalled += lag != str(info["best"] - info["finalized"])
        syncing = " syncing" if info["syncing"] else ""
        _show(f"{name}  {entry.rpc_url:<22}  {best:>20}  {final:>20}  {lag:>11}  "
              f"{info['peers']!s:>5}{syncing}  {info['address']}")
    if stalled:
        _show(f"⚠️ finality has stalled on {stalled} node(s): more than "
              f"{FINALITY_LAG_WARNING_BLOCKS} blocks above the finalized one (fewer than 2/3 "
              "of the validators voting? see their logs)")
    return 0


def _show(line: str) -> None:
    """Print one line of ``status``, its untrusted parts escaped (:mod:`client.display`)."""
    print(safe_text(line))
