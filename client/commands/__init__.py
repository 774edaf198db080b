"""The creator commands of ``opus``: keys, works, terms, licenses, royalties, usage, proofs.

They sign locally and talk to a node over JSON-RPC (:mod:`client.rpc`)::

    opus account new --out me.json
    opus work register song.flac --title "My song" --kind audio --key me.json
    opus license offer 1 --ai-training allowed --fee 5OPUS --commercial --royalty 1000 \\
        --derivatives --key me.json
    opus license acquire 1 --dev-account bob
    opus usage record 1 --purpose ai_training --subject "model-x v1" --dev-account bob
    opus earnings --key me.json
    opus proof 1 --out song.proof.json && opus verify song.proof.json
    opus sudo set-authorities ADDR … --key sudo.json    # validators: the sudo account only
    opus audit shards/ --licensee ADDR --out audit.html  # AI builders: a dataset's rights
    opus license acquire --from audit.csv --dev-account bob   # … every license it needs
    opus usage record --from audit.csv --purpose ai_training --subject MODEL --dev-account bob
    opus dataset certify audit.csv --subject MODEL --out s.json --dev-account bob
    opus registry export --at 0x… --out registry.parquet   # the registry as of a block…
    opus audit shards/ --registry registry.parquet --dask tcp://host:8786   # … joined locally
    opus verify s.json                                   # … checked against the chain

Common flags: ``--key FILE`` or ``--dev-account NAME`` (the signer), ``--rpc URL``
(default http://127.0.0.1:9944), ``--json`` (machine-readable output) and
``--wait inBlock|finalized`` (default inBlock). Amounts are in the smallest
unit, or in tokens with a suffix: ``2.5OPUS``.

A user error (a missing file, an unknown work, an unreachable node, a call the
chain refused, with its named error such as ``usage.PurposeNotAllowed``)
prints one ``Error: …`` line on stderr and exits 1; a wrong command line exits 2.

Titles, URIs, memos and every other text from the chain, the node or a proof
file are untrusted: the human-readable output shows their control, bidi and
other invisible characters as escapes (``\\x1b``, ``\\u202e``) and a backslash
as ``\\\\`` (:mod:`client.display`); ``--json`` keeps the exact text.

One module per command group, each with its commands and its ``add_parsers``:
:mod:`~client.commands.accounts` (``account``, ``transfer``), :mod:`~client.commands.works`,
:mod:`~client.commands.licenses`, :mod:`~client.commands.royalties`,
:mod:`~client.commands.usage`, :mod:`~client.commands.earnings` and
:mod:`~client.commands.proofs` (``proof``, ``verify``), :mod:`~client.commands.sudo`
(``sudo show``, ``sudo set-authorities``, ``sudo set-key``) and :mod:`~client.commands.audit`
(``audit``, with :mod:`client.audit`), :mod:`~client.commands.registry` (``registry
export``) and :mod:`~client.commands.datasets` (``license
acquire --from``, ``usage record --from``, ``dataset certify``). What they share:
:mod:`~client.commands.common` (the :class:`Context`, errors, output, adding a command)
and :mod:`~client.commands.arguments` (argument types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from client.commands import (
    accounts,
    audit,
    datasets,
    earnings,
    licenses,
    proofs,
    registry,
    royalties,
    sudo,
    usage,
    works,
)
from client.commands.common import CreatorError, format_amount

if TYPE_CHECKING:
    from client.commands.common import Subcommands

# In the order ``opus --help`` lists them.
GROUPS = (accounts, works, licenses, royalties, usage, earnings, proofs, sudo, audit,
          registry, datasets)


def add_creator_commands(subparsers: Subcommands) -> None:
    """Add the creator commands to ``opus``'s subparsers (each sets ``handler``)."""
    for group in GROUPS:
        group.add_parsers(subparsers)


__all__ = ["CreatorError", "add_creator_commands", "format_amount"]
