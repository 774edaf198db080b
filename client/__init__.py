"""What creators and AI builders run against an Opus Chain node.

* :mod:`client.rpc`: :class:`OpusClient`, a synchronous JSON-RPC client that signs
  transactions locally and waits for them;
* :mod:`client.keys`: key files; :mod:`client.proof`: offline provenance proofs;
* :mod:`client.api`: the JSON-RPC API's error codes and JSON shapes (shared with the
  node's server); :mod:`client.errors`: the client's named errors;
* :mod:`client.commands`: the creator commands of ``opus`` (``account``, ``work``,
  ``license``, …); :mod:`client.display`: untrusted text made safe for a terminal;
* :mod:`client.pipeline`: many transactions of one signer in flight (pipelined nonces),
  dry runs, parallel queries; :mod:`client.statement`: signed dataset statements.

It imports the runtime (encoding, signing, proof checks) and never ``node``, ``p2p`` or
``genesis``: a client installs and runs without the node's packages::

    python -c "from client import OpusClient; print(OpusClient().call('system_chain'))"
"""

from client.errors import (
    CallFailed,
    ClientError,
    NodeUnreachable,
    ProofError,
    RpcCallError,
    TransactionDropped,
    TransactionRefused,
    WaitTimeout,
)
from client.keys import load_key_file, parse_account, write_key_file
from client.proof import (
    ABSENCE_FORMAT,
    PROOF_FORMAT,
    VerifiedAbsence,
    VerifiedProof,
    verify_absence_proof,
    verify_provenance_proof,
)
from client.rpc import DEFAULT_RPC, OpusClient, Receipt

__all__ = [
    "ABSENCE_FORMAT",
    "DEFAULT_RPC",
    "PROOF_FORMAT",
    "CallFailed",
    "ClientError",
    "NodeUnreachable",
    "OpusClient",
    "ProofError",
    "Receipt",
    "RpcCallError",
    "TransactionDropped",
    "TransactionRefused",
    "VerifiedAbsence",
    "VerifiedProof",
    "WaitTimeout",
    "load_key_file",
    "parse_account",
    "verify_absence_proof",
    "verify_provenance_proof",
    "write_key_file",
]
