"""Perceptual fingerprints of images: PDQ, the soft binding a work record may carry.

A content hash (SHA-256 of the file's bytes) changes with one byte: a JPEG re-encode, a
resize or a crop gives a new hash. PDQ (Meta's open perceptual hash, the ``pdqhash``
package) hashes what the image looks like: 256 bits from its luminance's low
frequencies, so a re-encoded, resized, slightly cropped or brightened copy stays within a
small Hamming distance of the original, while different images are about 128 bits apart.

The fingerprint is computed here, from the decoded image (Pillow), never by the chain: the
runtime checks only its form (``provenance.check_soft_binding``). Images are first
shrunk to fit :data:`MAX_SIDE` pixels (PDQ itself works on a 64 × 64 summary; the shrink
makes large photos quick to hash and changes the hash by a bit or two at most).

PDQ's quality score (0-100) says how much structure the image has: a flat or almost flat
image gets a low score and a fingerprint that matches other flat images. Fingerprints
below :data:`MIN_QUALITY` (the threshold Meta recommends) are neither registered nor
looked up.

Distances: :data:`DEFAULT_MAX_DISTANCE` is the default "near-duplicate" threshold; its
match and false-match rates on real photographs are in docs/performance.md
(``bench/near_duplicates.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from client.errors import ClientError
from runtime.modules import provenance

if TYPE_CHECKING:
    from client.rpc import OpusClient

__all__ = ["DEFAULT_MAX_DISTANCE", "MAX_MATCH_DISTANCE", "MAX_SIDE", "MIN_QUALITY",
           "Fingerprint", "NotAnImage", "hamming", "looks_like_image", "pdq_of_file",
           "find_near_duplicates", "pdq_of_image", "query_fingerprints"]

PDQ_BYTES = 32  # 256 bits
MAX_SIDE = 512  # images are shrunk to fit this many pixels a side before hashing
MIN_QUALITY = 50  # below this PDQ score a fingerprint is too weak to match on
REFRAME_SHARE = 0.05  # a lookup also tries the image with this share cropped off or added
# The near-duplicate threshold (bits of 256); docs/performance.md has its measured rates.
DEFAULT_MAX_DISTANCE = 31
MAX_MATCH_DISTANCE = 47  # the largest distance a node's opus_findSimilarWorks answers for
# File name suffixes tried as images (others are not decoded: a dataset folder holds text,
# audio, …). Pillow decides in the end: a file that does not decode is not an image.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif",
                            ".tiff"})


class NotAnImage(ClientError):
    """The file could not be decoded as an image."""


@dataclass(frozen=True)
class Fingerprint:
    """A PDQ fingerprint and its quality score (0-100). The 32 bytes are those of the
    reference implementation's hex form (``Hash256::format``: words 15 … 0, big-endian),
    so fingerprints compare with other PDQ tools'."""

    value: bytes
    quality: int

    @property
    def usable(self) -> bool:
        """Whether it is strong enough to register and to match on (:data:`MIN_QUALITY`)."""
        return self.quality >= MIN_QUALITY

    def soft_binding(self) -> provenance.SoftBinding:
        """The work record's soft binding holding this fingerprint."""
        return provenance.SoftBinding(provenance.PDQ, self.value, self.quality)

    def hex(self) -> str:
        return self.value.hex()


def hamming(a: bytes, b: bytes) -> int:
    """The number of bits in which two equal-length fingerprints differ."""
    if len(a) != len(b):
        raise ValueError(f"fingerprints of {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def _pixels(image: Any) -> Any:
    """A decoded ``PIL.Image.Image`` as PDQ hashes it: upright, RGB, at most MAX_SIDE a side
    (a numpy array, height × width × 3)."""
    import numpy as np
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image) or image  # as a viewer shows it
    if image.mode != "RGB":
        image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC)
    return np.asarray(image)


def _pdq(pixels: Any) -> Fingerprint:
    import pdqhash

    bits, quality = pdqhash.compute(pixels)
    number = 0
    for bit in bits.tolist():  # (pdqhash lists the hash's bits most significant first)
        number = (number << 1) | (bit & 1)
    return Fingerprint(number.to_bytes(PDQ_BYTES, "big"), int(quality))


def pdq_of_image(image: Any) -> Fingerprint:
    """The PDQ fingerprint of a decoded ``PIL.Image.Image``."""
    return _pdq(_pixels(image))


def _reframed(pixels: Any) -> list[Any]:
    """The image re-framed as if :data:`REFRAME_SHARE` of its width and height had been
    cropped off (padded back by repeating its edge pixels, which measured closer than
    reflecting them: centred, and with the picture in each corner) or added (that much
    cropped off, centred)."""
    import numpy as np

    h, w = pixels.shape[:2]
    ph = min(h - 1, round(h * REFRAME_SHARE / (1 - REFRAME_SHARE)))
    pw = min(w - 1, round(w * REFRAME_SHARE / (1 - REFRAME_SHARE)))
    pads = [((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))]  # centred
    pads += [(rows, cols) for rows in ((ph, 0), (0, ph)) for cols in ((pw, 0), (0, pw))]
    out = [np.pad(pixels, (*pad, (0, 0)), mode="edge") for pad in pads]
    ch, cw = round(h * REFRAME_SHARE / 2), round(w * REFRAME_SHARE / 2)
    if h - 2 * ch > 0 and w - 2 * cw > 0:
        out.append(np.ascontiguousarray(pixels[ch:h - ch, cw:w - cw]))
    return out


def query_fingerprints(path: Path | str) -> list[Fingerprint]:
    """The fingerprints to look an image up by: its own first, then those of its
    re-framings (:func:`_reframed`), which find the works it is a slightly cropped copy
    of, or that are slightly cropped copies of it. ``NotAnImage`` if it does not decode.

    PDQ moves by 30-110 bits when 5 % of an image's width and height is cropped off (its
    low frequencies shift), past any safe threshold; re-framed back, such a crop is mostly
    within 31 bits again (docs/performance.md has the figures). Only the image's own
    fingerprint is registered; the re-framings cost six more PDQ hashes a lookup.
    """
    pixels = _open(path, _pixels)
    return [_pdq(pixels)] + [_pdq(p) for p in _reframed(pixels)]


def looks_like_image(path: Path | str) -> bool:
    """Whether the file's name says it is an image (:data:`IMAGE_SUFFIXES`)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def pdq_of_file(path: Path | str) -> Fingerprint:
    """The PDQ fingerprint of an image file; ``NotAnImage`` if it does not decode."""
    return _pdq(_open(path, _pixels))


_T = TypeVar("_T")


def _open(path: Path | str, use: Callable[[Any], _T]) -> _T:
    """``use(image)`` of the decoded image file; ``NotAnImage`` if it does not decode."""
    import warnings

    from PIL import Image

    name = os.fspath(path)
    try:
        with warnings.catch_warnings():
            # A huge image is refused below (DecompressionBombError), not warned about.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # a JPEG decodes at a reduced size
                return use(image)
    except OSError as e:  # (Pillow's UnidentifiedImageError is an OSError too)
        raise NotAnImage(f"{name} is not an image this client can decode: "
                         f"{e.strerror or e}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, ValueError,
            SyntaxError) as e:
        raise NotAnImage(f"{name} is not an image this client can decode: {e}") from None


def find_near_duplicates(client: OpusClient, fingerprints: list[Fingerprint],
                         max_distance: int, at: bytes | None = None) -> dict[str, Any]:
    """The registered works within ``max_distance`` bits of any of ``fingerprints`` (an
    image's :func:`query_fingerprints`), each once at its least distance, nearest first:
    ``opus_findSimilarWorks``' answer ``{blockHash, blockNumber, works, complete}``, merged
    (``complete`` False if any lookup stopped at the node's candidate limit). All the
    lookups are answered at one block (``at``, else the best block at the first)."""
    nearest: dict[int, dict[str, Any]] = {}
    answer: dict[str, Any] = {}
    complete = True
    for fingerprint in fingerprints:
        answer = client.find_similar_works(fingerprint.value, max_distance, at=at)
        at = bytes.fromhex(answer["blockHash"][2:])
        complete = complete and answer.get("complete", True) is not False
        for work in answer["works"]:
            known = nearest.get(work["workId"])
            if known is None or work["distance"] < known["distance"]:
                nearest[work["workId"]] = work
    works = sorted(nearest.values(), key=lambda w: (w["distance"], w["workId"]))
    return {"blockHash": answer.get("blockHash"), "blockNumber": answer.get("blockNumber"),
            "works": works, "complete": complete}
