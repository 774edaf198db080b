"""spec.md 5.7: where a justification's ``round`` and ``set_id`` come from on a chain of
several authorities. They are the gadget's own numbering (rounds from 1 in each authority
set), not the block number, which the spec once said. Four in-process validators
(``test_finality.cluster``); the set change (``set_id`` 0 → 1) is covered by
``test_finality.test_authority_set_change_takes_effect_at_a_finalized_block``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from processes import ROOT
from test_finality import SLOT_MS, cluster

from genesis import Genesis, build_genesis, local_spec
from runtime.block import verify_justification
from runtime.modules import validators


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return build_genesis(local_spec(4, SLOT_MS))


async def test_a_round_is_not_a_block_number(genesis: Genesis, tmp_path: Path) -> None:
    spec = " ".join((ROOT / "docs" / "spec.md").read_text().split())
    assert "So `round` is **not** the block number" in spec
    async with cluster(genesis, tmp_path) as c:
        # Every validator has blocks 1 … 5 before round 1 starts: round 1 finalizes #5.
        blocks = c.builder.chain(genesis.hash, range(1, 6))
        await c.deliver(blocks)
        await c.start()
        await c.wait_final(5)
        store = c.nodes[0].store
        first = store.justification(blocks[-1].hash)
        assert first is not None
        assert (first.round, first.set_id, first.block_number) == (1, 0, 5)
        # The next block comes in a later round of the same set, whatever its number.
        more = c.builder.block(blocks[-1].hash, 6)
        await c.deliver([more])
        await c.wait_final(6)
        second = store.justification(more.hash)
        assert second is not None and second.set_id == 0
        assert 1 < second.round < 6
        for justification, block in ((first, blocks[-1]), (second, more)):
            parent_state = store.state_at(block.header.parent_hash)
            verify_justification(justification, block.header,
                                 validators.authorities.get(parent_state))
        c.assert_safe()
