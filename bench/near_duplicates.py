"""Benchmark: PDQ near-duplicate matching on real photographs, and the index's lookup speed.

Part 1, match rates. The photographs that ship inside scikit-image (:data:`PHOTOS`; nothing
is downloaded) and their variants (:func:`variants`: JPEG quality 50-90, resized to 50 %,
cropped 5 %, brightness ±10 %, re-encoded as PNG and WebP) are fingerprinted with the
client's code (:mod:`client.fingerprint`). For each distance threshold it reports:

* the match rate: the share of (original, variant of it) pairs within the threshold;
* the false matches: pairs of files of *different* photographs (originals and variants)
  within the threshold, out of all such pairs.

Part 2, lookup speed. ``--works N`` random fingerprints (plus each photograph's) are put in
a real LevelDB through the node's index code (:mod:`node.chain.similar`), and every file's
fingerprint is looked up through a store's index cursor at each of ``--distances``: lookups
per second (wall clock and CPU) and the candidates each lookup checked.

Prints one JSON object::

    .venv/bin/python -m bench.near_duplicates [--works 100000] [--thresholds 8,16,...]
        [--distances 15,31,47]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.fingerprint import (
    DEFAULT_MAX_DISTANCE,
    hamming,
    pdq_of_file,
    query_fingerprints,
)

# The photographs shipped inside scikit-image (skimage.data; ``cat`` is ``chelsea`` again and
# ``motorcycle_right`` the other view of a stereo pair, so both are left out).
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field",
          "immunohistochemistry", "moon", "retina", "rocket", "motorcycle_left", "horse")
# Its other bundled images: textures (periodic, so a crop shifts their phase), scanned text
# and a near-flat clock (PDQ quality below 50: never registered nor looked up). Measured too,
# reported apart.
OTHERS = ("brick", "grass", "gravel", "page", "text", "clock")


def photo(name: str) -> Any:
    """The scikit-image sample photograph ``name`` as a PIL image (from the package)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    if name == "motorcycle_left":
        pixels = skimage.data.stereo_motorcycle()[0]  # type: ignore[no-untyped-call]
    else:
        pixels = getattr(skimage.data, name)()
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:  # (boolean or 16-bit samples)
        pixels = (pixels.astype(np.float64) * (255.0 / max(1, pixels.max()))).astype(np.uint8)
    image = Image.fromarray(pixels)
    return image.convert("RGB") if image.mode not in ("RGB", "L") else image


def _encoded(image: Any, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _brightness(image: Any, factor: float) -> Any:
    from PIL import ImageEnhance

    return ImageEnhance.Brightness(image).enhance(factor)


def _crop(image: Any, share: float, centred: bool) -> Any:
    w, h = image.size
    dx, dy = round(w * share), round(h * share)
    if centred:
        return image.crop((dx // 2, dy // 2, w - (dx - dx // 2), h - (dy - dy // 2)))
    return image.crop((dx, dy, w, h))


# Each variant: (name, suffix, bytes of the file from the original image).
VARIANTS: tuple[tuple[str, str, Callable[[Any], bytes]], ...] = (
    *((f"jpeg_q{q}", ".jpg", lambda im, q=q: _encoded(im, "JPEG", quality=q))
      for q in (50, 60, 70, 80, 90)),
    ("resized_50", ".png", lambda im: _encoded(im.resize((im.width // 2, im.height // 2)),
                                               "PNG")),
    ("crop_5_centred", ".png", lambda im: _encoded(_crop(im, 0.05, True), "PNG")),
    ("crop_5_corner", ".png", lambda im: _encoded(_crop(im, 0.05, False), "PNG")),
    ("brighter_10", ".png", lambda im: _encoded(_brightness(im, 1.10), "PNG")),
    ("darker_10", ".png", lambda im: _encoded(_brightness(im, 0.90), "PNG")),
    ("png", ".png", lambda im: _encoded(im, "PNG")),
    ("webp", ".webp", lambda im: _encoded(im, "WEBP", quality=80)),
)


def write_photo(name: str, folder: Path) -> Path:
    """The photograph saved losslessly as ``folder/NAME.png`` (the "original")."""
    path = folder / f"{name}.png"
    path.write_bytes(_encoded(photo(name), "PNG"))
    return path


def write_variants(name: str, folder: Path) -> dict[str, Path]:
    """Every variant of the photograph as a file in ``folder``: variant name -> path."""
    image = photo(name)
    out = {}
    for variant, suffix, make in VARIANTS:
        path = folder / f"{name}.{variant}{suffix}"
        path.write_bytes(make(image))
        out[variant] = path
    return out


def _distances(folder: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """Every photograph's original's fingerprint (the registered one) and, per file of it
    (original and variants), the query fingerprints (its own first, then re-framed)."""
    out: dict[str, Any] = {}
    for name in names:
        original = pdq_of_file(write_photo(name, folder))
        files = {"original": query_fingerprints(folder / f"{name}.png")}
        files.update((variant, query_fingerprints(path))
                     for variant, path in write_variants(name, folder).items())
        out[name] = (original, files)
    return out


def _rates(found: dict[str, Any], thresholds: list[int], reframed: bool) -> dict[str, Any]:
    """Match and false-match rates: a file matches a registered original when one of its
    query fingerprints (only its own unless ``reframed``) is within the threshold."""
    def distance(queries: list[Any], registered: bytes) -> int:
        return min(hamming(q.value, registered) for q in (queries if reframed else queries[:1]))

    usable = [n for n, (original, _) in found.items() if original.usable]
    same = {(n, v): distance(q, found[n][0].value) for n in usable
            for v, q in found[n][1].items() if v != "original"}
    different = [distance(q, found[other][0].value) for n in found for q in found[n][1].values()
                 for other in usable if other != n]
    variants = sorted({v for _, v in same})
    rates = []
    for d in thresholds:
        matched = sum(1 for v in same.values() if v <= d)
        false = sum(1 for v in different if v <= d)
        rates.append({"maxDistance": d, "matchRate": round(matched / len(same), 4),
                      "matched": matched, "variantPairs": len(same),
                      "missedAt": sorted(f"{n}.{v}" for (n, v), x in same.items() if x > d)
                      if d == DEFAULT_MAX_DISTANCE else None,
                      "falseMatches": false, "differentPairs": len(different)})
    return {"maxDistanceByVariant": {v: max(x for (_, w), x in same.items() if w == v)
                                     for v in variants},
            "medianVariantDistance": statistics.median(same.values()),
            "minDifferentDistance": min(different),
            "medianDifferentDistance": statistics.median(different),
            "thresholds": rates}


def measure(folder: Path, thresholds: list[int]) -> dict[str, Any]:
    """Part 1 (module doc) over the photographs (and apart, the other images) written into
    ``folder``: plain lookups (the file's own fingerprint) and re-framed ones (what
    ``opus work match`` and ``opus audit`` do)."""
    photos = _distances(folder, PHOTOS)
    everything = photos | _distances(folder, OTHERS)
    quality = {n: original.quality for n, (original, _) in everything.items()}
    return {"photos": list(PHOTOS), "others": list(OTHERS), "quality": quality,
            "variants": [v for v, _, _ in VARIANTS],
            "photosPlain": _rates(photos, thresholds, reframed=False),
            "photosReframed": _rates(photos, thresholds, reframed=True),
            "allPlain": _rates(everything, thresholds, reframed=False),
            "allReframed": _rates(everything, thresholds, reframed=True)}


def lookup_speed(works: int, queries: list[bytes], distances: list[int]) -> dict[str, Any]:
    """Part 2 (module doc): ``works`` random fingerprints plus ``queries``' in a LevelDB."""
    import plyvel

    from node.chain import similar
    from node.chain.dbformat import INDEX
    from node.chain.store import IndexCursor

    rng = random.Random(15)
    with tempfile.TemporaryDirectory() as tmp:
        db = plyvel.DB(str(Path(tmp) / "index"), create_if_missing=True)
        started = time.perf_counter()
        batch = db.write_batch()
        stored = [rng.randbytes(32) for _ in range(works)] + queries
        for work_id, fp in enumerate(stored, start=1):
            for key, value in similar.entries(work_id, fp).items():
                batch.put(INDEX + key, value)
        batch.write()
        build_s = time.perf_counter() - started
        db.compact_range()
        runs = []
        for max_distance in distances:
            found = candidates = 0
            wall, cpu = time.perf_counter(), time.process_time()
            with IndexCursor(db.raw_iterator()) as cursor:
                for fp in queries:
                    matches, checked, _ = similar.search(cursor, fp, max_distance)
                    found += len(matches)
                    candidates += checked
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            runs.append({"maxDistance": max_distance,
                         "lookupsPerSecond": round(len(queries) / wall, 1),
                         "lookupsPerCpuSecond": round(len(queries) / cpu, 1) if cpu else None,
                         "msPerLookup": round(1000 * wall / len(queries), 3),
                         "candidatesPerLookup": round(candidates / len(queries), 1),
                         "matchesPerLookup": round(found / len(queries), 2)})
        db.close()
    return {"works": len(stored), "queries": len(queries), "buildSeconds": round(build_s, 2),
            "lookups": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--works", type=int, default=100_000,
                        help="random fingerprints in the index (part 2; default 100000)")
    parser.add_argument("--thresholds", default="8,16,24,31,40,47,63",
                        help="distances to report part 1 at (comma-separated)")
    parser.add_argument("--distances", default=f"15,{DEFAULT_MAX_DISTANCE},47",
                        help="the lookups' distances (part 2; comma-separated)")
    args = parser.parse_args()
    thresholds = [int(t) for t in args.thresholds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rates = measure(folder, thresholds)
        queries = [pdq_of_file(p).value for p in sorted(folder.iterdir())]
    print(json.dumps({"benchmark": "near_duplicates", "matching": rates,
                      "index": lookup_speed(args.works, queries,
                                            [int(d) for d in args.distances.split(",")])}))


if __name__ == "__main__":
    main()
