"""``opus registry export``: the registry as of a block, as one parquet file.

::

    opus registry export --at 0x… --out registry.parquet [--licensee ADDR]
    opus audit shards/ --registry registry.parquet --out audit.parquet
    opus audit shards/ --registry registry.parquet --dask tcp://scheduler:8786 --out a.csv

The file (:mod:`client.audit.registry`) holds one row a work: its content hash, PDQ
fingerprint, work id, owner and the terms that apply to AI training, with the block hash
and number and the chain's genesis hash in its metadata, so an audit against it names the
block (and every row can be proved with ``opus proof WORK_ID --block HASH``). With
``--licensee``, each work's row also holds that account's license for training: an audit
against the registry then reports that licensee's ``licensed`` items. A progress bar
(works/s, ETA) shows on a terminal once the export takes more than a second.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.commands import arguments
from client.commands.common import Context, CreatorError, command, group
from runtime.codec import hex0x

if TYPE_CHECKING:
    from client.commands.common import Subcommands

PROGRESS_DELAY_S = 1.0


def export(ctx: Context) -> int:
    from tqdm import tqdm

    from client.audit.registry import export_registry

    a = ctx.args
    out = Path(a.out)
    if out.suffix.lower() != ".parquet":
        raise CreatorError(f"{out.name}: a registry is a .parquet file")
    if out.is_dir():
        raise CreatorError(f"{str(out)!r} is a folder")
    at: bytes | None = a.at
    if at is not None and ctx.client.header(at) is None:
        raise CreatorError(f"the node has no block {hex0x(at)} (--at)")
    bar = tqdm(unit=" works", unit_scale=True, file=sys.stderr, delay=PROGRESS_DELAY_S,
               disable=None, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        info = export_registry(a.rpc, out, at=at, licensee=a.licensee, progress=progress)
    finally:
        bar.close()
    size = out.stat().st_size
    data: dict[str, Any] = info.to_json() | {"out": str(out), "bytes": size}
    lines = [f"Exported {info.works:,} works as of block #{info.block_number} "
             f"{info.block_hash} to {out} ({size / 2**20:,.1f} MiB)",
             f"  chain (genesis)         {info.genesis_hash}"]
    if info.licensee:
        lines.append(f"  licensee                {info.licensee}")
    ctx.emit(data, lines)
    return 0


def add_parsers(sub: Subcommands) -> None:
    registries = group(sub, "registry", "the registry as a file, for audits past one machine")
    p = command(registries, "export", export,
                "write every work as of a block (content hash, PDQ fingerprint, work id, "
                "owner, the terms that apply to AI training) to a parquet file")
    p.add_argument("--out", required=True, metavar="FILE", help="the registry (.parquet)")
    p.add_argument("--at", type=arguments.hash32, metavar="BLOCK_HASH",
                   help="export as of this block (default: the best block when the export "
                        "starts); the file names the block either way")
    p.add_argument("--licensee", type=arguments.address_text, metavar="ADDR",
                   help="also write this account's license for training on each work, so "
                        "an audit against the registry reports its licensed items "
                        "(default: none)")
