"""The chain database of a base path: ``opus purge-chain``, ``export-blocks``,
``import-blocks`` (each block re-executed and verified) and ``check-block``."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from node.cli.common import UserError, base_path, load_genesis, open_store, parse_hex
from runtime.codec import hex0x

if TYPE_CHECKING:
    from node.chain.store import ChainStore
    from runtime.block import Block, Header
    from runtime.execution import ExecutedBlock


def purge_chain(args: argparse.Namespace) -> int:
    from node.chain.store import db_path

    genesis = load_genesis(args)
    path = db_path(base_path(args, genesis))
    if not path.exists():
        print(f'"{path}" did not exist.')
        return 0
    if not args.yes:
        try:
            answer = input(f'Are you sure to remove "{path}"? [y/N]: ')
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("Aborted")
            return 0
    _refuse_if_locked(path)
    shutil.rmtree(path)
    print(f'"{path}" removed.')
    return 0


def _refuse_if_locked(path: Path) -> None:
    """Never delete the database of a running node: LevelDB's lock tells."""
    import plyvel

    try:
        plyvel.DB(str(path), create_if_missing=False).close()
    except plyvel.Error as e:
        if "lock" in str(e).lower():
            raise UserError(f"the database {path} is in use by a running node; stop it first") \
                from None


def export_blocks(args: argparse.Namespace) -> int:
    from node.chain.blockfile import export_blocks as export

    genesis = load_genesis(args)
    with open_store(args, genesis, create=False) as store:
        best = store.best_header.number
        end = best if args.end is None else args.end
        if end > best:
            raise UserError(f"--to {end} is above the best block #{best}")
        if args.start > end:
            raise UserError(f"nothing to export: --from {args.start} is above #{end}")
        try:
            count = export(store, args.file, args.start, end)
        except OSError as e:
            raise UserError(f"cannot write {args.file}: {e.strerror or e}") from None
    print(f"Exported {count} blocks (#{args.start}..#{end}) to {args.file}", file=sys.stderr)
    return 0


def _verify_justification(store: ChainStore, block: Block) -> None:
    from runtime.block import InvalidJustification, verify_justification
    from runtime.modules import validators

    justification = block.justification
    if justification is None:
        return
    parent_state = store.state_at(block.header.parent_hash)
    try:
        verify_justification(justification, block.header, validators.authorities.get(parent_state))
    except InvalidJustification as e:
        raise UserError(f"block #{block.number} ({hex0x(block.hash)}) has an invalid "
                        f"justification: {e}") from None


def _reexecute(store: ChainStore, genesis_hash: bytes, parent: Header, block: Block,
               failure: str) -> ExecutedBlock:
    """Execute ``block`` on its parent's state and check its justification, if it has one;
    what it did, or a UserError that starts with ``failure`` and names the error."""
    from runtime.execution import BlockError, execute_block

    try:
        executed = execute_block(store.state_at(parent.hash), store.node_store, parent, block,
                                 genesis_hash)
    except BlockError as e:
        raise UserError(f"{failure}: {type(e).__name__}: {e}") from None
    _verify_justification(store, block)
    return executed


def import_blocks(args: argparse.Namespace) -> int:
    from node.chain.blockfile import import_blocks as read_blocks

    genesis = load_genesis(args)
    imported = known = 0
    started = last_report = time.monotonic()
    with open_store(args, genesis, create=True) as store:
        for block in read_blocks(args.file):
            where = f"block #{block.number} ({hex0x(block.hash)})"
            if store.has_block(block.hash):
                known += 1
                continue
            parent = store.header(block.header.parent_hash)
            if parent is None:
                raise UserError(f"{where}: its parent {hex0x(block.header.parent_hash)} is not "
                                f"known")
            executed = _reexecute(store, genesis.hash, parent, block, f"{where} is invalid")
            store.import_block(executed, finalize=block.justification is not None,
                               durable=False)  # written while the next block executes
            imported += 1
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                print(f"Importing: #{block.number} ({imported} blocks)", file=sys.stderr)
        store.flush()
        best = store.best_header
        finalized = store.finalized_header
        seconds = time.monotonic() - started
    print(f"Imported {imported} blocks ({known} already known) in {seconds:.1f} s; "
          f"best: #{best.number} ({hex0x(best.hash)}), finalized #{finalized.number}",
          file=sys.stderr)
    return 0


def _resolve_block(store: ChainStore, text: str) -> bytes:
    if text.isdigit():
        block_hash = store.hash_at(int(text))
        if block_hash is None:
            raise UserError(f"the best chain has no block #{text} "
                            f"(best is #{store.best_header.number})")
        return bytes(block_hash)
    block_hash = parse_hex(text, "the block hash", 32)
    if not store.has_block(block_hash):
        raise UserError(f"no stored block {hex0x(block_hash)}")
    return block_hash


def check_block(args: argparse.Namespace) -> int:
    genesis = load_genesis(args)
    with open_store(args, genesis, create=False) as store:
        block_hash = _resolve_block(store, args.block)
        block = store.block(block_hash)
        if block is None:
            raise UserError(f"no stored block {hex0x(block_hash)}")
        where = f"block #{block.number} ({hex0x(block_hash)})"
        if block.number == 0:
            if block_hash != genesis.hash:
                raise UserError(f"{where} is not this chain's genesis")
            print(f"{where} is the genesis block: OK")
            return 0
        parent = store.header(block.header.parent_hash)
        if parent is None:
            raise UserError(f"{where}: its parent is not stored")
        started = time.perf_counter()
        executed = _reexecute(store, genesis.hash, parent, block, f"{where} failed")
        ms = (time.perf_counter() - started) * 1000
    print(f"{where} is OK: {len(block.extrinsics)} extrinsics, {len(executed.events)} events, "
          f"state root {hex0x(block.header.state_root)} ({ms:.0f} ms)")
    return 0
