"""Opus Chain's p2p layer on py-libp2p: host, handshake, gossip, sync and peer management.

Imports ``runtime`` (types and codec) and libp2p only, never ``node``: the node
passes itself in through :class:`p2p.network.ChainAccess`.
"""

from p2p.gossip import GossipConfig
from p2p.network import ChainAccess, Network, NetworkConfig, TxImport
from p2p.peers import PeerSummary, Penalty
from p2p.protocol import ProtocolNames, Role
from p2p.sync import SyncConfig

__all__ = ["ChainAccess", "GossipConfig", "Network", "NetworkConfig", "Penalty", "PeerSummary",
           "ProtocolNames", "Role", "SyncConfig", "TxImport"]
