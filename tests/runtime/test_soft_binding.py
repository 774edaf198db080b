"""A work's soft binding (a PDQ fingerprint): the runtime checks its form, never the pixels,
and records written before it existed read as they did."""

from __future__ import annotations

import dataclasses

import pytest

from node.chain import similar
from node.chain.blocks import EventRecords
from runtime import codec
from runtime.crypto import blake2_256, sha256
from runtime.modules import provenance
from runtime.modules.provenance import SoftBinding
from runtime.support import EventLog, EventRecord
from tests.runtime_helpers import ALICE, MiniChain, expect_failure, expect_ok, work_args

PDQ = blake2_256(b"a fingerprint")  # the runtime never looks at what the 32 bytes are


@pytest.fixture
def chain() -> MiniChain:
    return MiniChain()


def bound(content: str, binding: SoftBinding | None, **kw: object) -> provenance.RegisterWork:
    return dataclasses.replace(work_args(content, **kw), soft_binding=binding)  # type: ignore[arg-type]


def test_an_image_registered_with_its_pdq_fingerprint_keeps_it(chain: MiniChain) -> None:
    binding = SoftBinding("pdq", PDQ, 87)
    applied = expect_ok(chain, ALICE, bound("photo.jpg", binding))
    work = provenance.works.get(chain.state, 1)
    assert work is not None and work.soft_binding == binding
    event = applied.one(provenance.WorkRegistered)
    assert event.soft_binding == binding
    # The node's index finds it by its fingerprint (node.chain.similar, from the event).
    assert similar.pdq_chunks.get(chain.index, bytes((0,)) + PDQ[:2] + (1).to_bytes(8, "big")) \
        == PDQ


def test_a_quality_score_is_optional(chain: MiniChain) -> None:
    expect_ok(chain, ALICE, bound("photo.jpg", SoftBinding("pdq", PDQ, None)))
    work = provenance.works.get(chain.state, 1)
    assert work is not None and work.soft_binding == SoftBinding("pdq", PDQ, None)


@pytest.mark.parametrize(
    ("binding", "kind", "error"),
    [
        (SoftBinding("phash", PDQ, 90), provenance.WorkKind.IMAGE,
         "provenance.UnknownBindingAlgorithm"),
        (SoftBinding("PDQ", PDQ, 90), provenance.WorkKind.IMAGE,
         "provenance.UnknownBindingAlgorithm"),  # names are exact
        (SoftBinding("pdq", PDQ[:31], 90), provenance.WorkKind.IMAGE,
         "provenance.BadBindingLength"),
        (SoftBinding("pdq", PDQ + b"\x00", 90), provenance.WorkKind.IMAGE,
         "provenance.BadBindingLength"),
        (SoftBinding("pdq", b"", None), provenance.WorkKind.IMAGE, "provenance.BadBindingLength"),
        (SoftBinding("pdq", PDQ, 101), provenance.WorkKind.IMAGE, "provenance.BadBindingQuality"),
        (SoftBinding("pdq", PDQ, 90), provenance.WorkKind.TEXT, "provenance.BindingKindMismatch"),
        (SoftBinding("pdq", PDQ, 90), provenance.WorkKind.VIDEO,
         "provenance.BindingKindMismatch"),
    ],
)
def test_a_malformed_soft_binding_is_refused_by_name(
    chain: MiniChain, binding: SoftBinding, kind: provenance.WorkKind, error: str
) -> None:
    applied = expect_failure(chain, ALICE, bound("photo.jpg", binding, kind=kind), error)
    assert applied.detail  # says what is wrong
    assert provenance.works.get(chain.state, 1) is None
    assert provenance.work_by_content.get(chain.state, sha256(b"photo.jpg")) is None
    assert not list(chain.index.iter_prefix(similar.pdq_chunks.prefix))


def test_an_over_long_value_or_name_is_a_decode_error() -> None:
    """Past the codec's bounds (value ≤ 64 bytes, name ≤ 16) the call does not decode."""
    args = bound("photo.jpg", SoftBinding("pdq", PDQ, 90))
    wire = codec.to_wire(args)
    for binding in (["pdq", b"\x00" * 65, 90], ["p" * 17, PDQ, 90], ["pdq", PDQ, 256]):
        data = codec.pack([*wire[:-1], binding])
        with pytest.raises((codec.TooLong, codec.OutOfRange)):
            codec.decode(data, provenance.RegisterWork)


def test_records_without_a_binding_encode_as_before() -> None:
    """The binding is an optional trailing field: absent, a Work is the 12-item array of spec
    version 1 (a stored record reads back unchanged), and an explicit nil is refused."""
    work = provenance.Work(1, sha256(b"x"), provenance.WorkKind.IMAGE, "t", "", None,
                           ALICE.public, (provenance.Split(ALICE.public, 10_000),), (), (), 3, 4)
    wire = codec.to_wire(work)
    assert len(wire) == 12
    assert codec.decode(codec.pack(wire), provenance.Work) == work
    with pytest.raises(codec.NonCanonical):
        codec.decode(codec.pack([*wire, None]), provenance.Work)
    with_binding = dataclasses.replace(work, soft_binding=SoftBinding("pdq", PDQ, 90))
    assert len(codec.to_wire(with_binding)) == 13
    assert codec.decode(codec.encode(with_binding), provenance.Work) == with_binding


@pytest.mark.parametrize("binding", [None, SoftBinding("pdq", PDQ, 90)])
def test_the_event_logs_encoding_is_the_codecs(binding: SoftBinding | None) -> None:
    """The event log encodes records on a fast path of its own: it leaves off an absent
    binding exactly as the codec does (a stored block's events must decode)."""
    event = provenance.WorkRegistered(7, sha256(b"x"), ALICE.public, provenance.WorkKind.IMAGE,
                                      (), binding)
    log = EventLog()
    log.append(EventRecord(0, event))
    assert log.encoded() == codec.encode((EventRecord(0, event),), EventRecords)
    assert codec.decode(log.encoded(), EventRecords)[0].event == event
