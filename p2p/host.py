"""The libp2p host: ed25519 identity, TCP, Noise (only) and Yamux (only).

:func:`build_host` makes a py-libp2p ``BasicHost`` with exactly one security
protocol (``/noise``; never plaintext, secio or TLS) and one stream muxer
(``/yamux/1.0.0``). :func:`running_host` runs it (listening) inside the
caller's task tree and stops py-libp2p's auto-connector, which would otherwise
dial any peer in the peerstore: the :class:`p2p.network.Network` decides whom
to dial (boot nodes, with back-off) and whom to keep (handshake, bans).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

log = logging.getLogger("opus.p2p")
# The auto-connector's first (empty) round runs before running_host() can stop it and
# logs "initiating 100 new dials" at INFO: not true for us, so keep it quiet.
logging.getLogger("libp2p.network.auto_connector").setLevel(logging.WARNING)

DEFAULT_PORT = 30333
DEFAULT_LISTEN_ADDR = f"/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"
MAX_CONNECTIONS = 200
CLOSE_TIMEOUT = 5.0


class InvalidMultiaddr(ValueError):
    """A listen address or boot node that is not a usable multiaddr."""


class PortInUse(Exception):
    """A listen address's TCP port is taken (by another node, most likely)."""

    def __init__(self, port: int, host: str) -> None:
        super().__init__(f"p2p port {port} in use on {host} (another node? choose another "
                         "--port)")
        self.port = port
        self.host = host


def parse_listen_addr(text: str) -> multiaddr.Multiaddr:
    try:
        addr = multiaddr.Multiaddr(text)
    except Exception as e:
        raise InvalidMultiaddr(f"invalid listen address {text!r}: {e}") from None
    names = [p.name for p in addr.protocols()]
    if "tcp" not in names or not ({"ip4", "ip6"} & set(names)):
        raise InvalidMultiaddr(f"listen address {text!r} is not /ip4|ip6/…/tcp/<port>")
    return addr


def parse_peer_addr(text: str) -> PeerInfo:
    """A boot node: ``/ip4/1.2.3.4/tcp/30333/p2p/12D3Koo…`` (or ``/dns4/…``)."""
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(text))
    except Exception as e:
        raise InvalidMultiaddr(f"invalid peer address {text!r} (need …/p2p/<peer id>): {e}") \
            from None


def peer_id_of(key_pair: KeyPair) -> ID:
    return ID.from_pubkey(key_pair.public_key)


def build_host(key_pair: KeyPair, listen_addrs: Sequence[multiaddr.Multiaddr]) -> IHost:
    """A host with ``key_pair``'s identity, speaking TCP + Noise + Yamux and nothing else."""
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    connection_config = ConnectionConfig(
        max_connections=MAX_CONNECTIONS,
        high_watermark=MAX_CONNECTIONS,
        low_watermark=0,
        min_connections=0,
        max_connections_per_peer=3,
    )
    return new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=list(listen_addrs),
        connection_config=connection_config,
        enable_mDNS=False,
        enable_upnp=False,
    )


def refuse_dials(host: IHost, refused: Callable[[str], bool]) -> None:
    """Make ``host`` refuse to dial a peer while ``refused(peer_id)`` is true (a ban).

    py-libp2p dials a peer whenever something opens a stream to it, and its
    pubsub opens one to every peer that connects: a banned peer that connected
    (and was disconnected on sight) was dialled straight back. The connection
    gate filters by address only, so this wraps the swarm's one dialling entry
    point, ``dial_peer`` (used by ``host.connect`` and ``new_stream``).
    """
    swarm = host.get_network()
    dial = swarm.dial_peer

    async def dial_unless_refused(peer_id: ID) -> list[INetConn]:
        if refused(peer_id.to_base58()):
            raise SwarmException(f"not dialling {peer_id}: the peer is banned")
        return await dial(peer_id)

    swarm.dial_peer = dial_unless_refused  # type: ignore[method-assign]


def check_ports_free(listen_addrs: Sequence[multiaddr.Multiaddr]) -> None:
    """Refuse a listen address whose port is taken: :class:`PortInUse`.

    py-libp2p's TCP listener sets SO_REUSEPORT, so a second node on the same port
    started without error and the kernel split incoming connections between the two.
    A plain bind (SO_REUSEADDR only, as a restarted node needs) fails while any socket
    listens there, whatever options that one set.
    """
    for addr in listen_addrs:
        names = {p.name for p in addr.protocols()}
        family = socket.AF_INET6 if "ip6" in names else socket.AF_INET
        ip = addr.value_for_protocol("ip6" if "ip6" in names else "ip4")
        port = int(addr.value_for_protocol("tcp"))
        if port == 0:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((ip, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise PortInUse(port, ip) from None
                raise


@asynccontextmanager
async def running_host(host: IHost, listen_addrs: Sequence[multiaddr.Multiaddr]
                       ) -> AsyncIterator[IHost]:
    """Run ``host`` listening on ``listen_addrs`` until the block exits (:class:`PortInUse`
    if a port is taken)."""
    check_ports_free(listen_addrs)
    async with host.run(listen_addrs=list(listen_addrs)):
        swarm = host.get_network()
        auto_connector = getattr(swarm, "auto_connector", None)
        if auto_connector is not None:
            await auto_connector.stop()
        try:
            yield host
        finally:
            # py-libp2p's own teardown runs its awaits in our (cancelled) scope, so they
            # stop at the first checkpoint and can leave the listener accepting; close
            # connections and listeners explicitly, shielded and bounded in time.
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    await host.close()
                except Exception as e:
                    log.debug("Closing the libp2p host failed: %s", e)


def remote_address(conn: INetConn) -> str:
    try:
        addrs = conn.get_transport_addresses()
    except Exception:
        return ""
    return str(addrs[0]) if addrs else ""


class ConnectionEvents(INotifee):
    """Forwards connect/disconnect notifications to a trio channel without blocking.

    py-libp2p awaits notifees inline on its connection path, so this only
    queues the event; the network's own task handles it.
    """

    def __init__(self, send: trio.MemorySendChannel[tuple[str, ID, str]]) -> None:
        self._send = send

    def _put(self, kind: str, conn: INetConn) -> None:
        peer_id = getattr(conn.muxed_conn, "peer_id", None)
        if peer_id is None:
            return
        try:
            self._send.send_nowait((kind, peer_id, remote_address(conn)))
        except trio.WouldBlock:
            log.warning("Connection event queue full: %s event for %s not handled", kind,
                        peer_id)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._put("connected", conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._put("disconnected", conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


def has_connection(host: IHost, peer_id: ID) -> bool:
    try:
        conns = host.get_network().get_connections(peer_id)
    except Exception:
        return False
    for conn in conns:
        muxed = getattr(conn, "muxed_conn", None)
        if muxed is None or not getattr(muxed, "is_closed", False):
            return True
    return False
