"""Aspect-ratio bucketing as sd-scripts does it.

Buckets keep roughly the target area (``resolution²``) with sides in
``steps``-pixel increments. Each image goes to the bucket with the nearest aspect
ratio, is resized to *cover* it and centre-cropped. With ``no_upscale`` an image
larger than the target area is shrunk to it, a smaller one keeps its size, and
its bucket is its own size floored to ``steps``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

Size = tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class Placement:
    """Where one image goes: the bucket, the size it is resized to, and the crop."""

    bucket: Size
    resized: Size
    crop_left_top: tuple[int, int]


def make_buckets(resolution: int, min_side: int, max_side: int, steps: int) -> list[Size]:
    """sd-scripts' ``make_bucket_resolutions`` for a square target of side ``resolution``."""
    area = resolution * resolution
    side = int(math.sqrt(area) // steps) * steps
    buckets = {(side, side)}
    width = min_side
    while width <= max_side:
        height = min(max_side, int(area // width // steps) * steps)
        if height >= min_side:
            buckets.add((width, height))
            buckets.add((height, width))
        width += steps
    return sorted(buckets)


def _cover(image: Size, bucket: Size) -> Placement:
    width, height = image
    bucket_width, bucket_height = bucket
    if width / height > bucket_width / bucket_height:  # relatively wider: match the height
        resized = (max(bucket_width, round(width * bucket_height / height)), bucket_height)
    else:
        resized = (bucket_width, max(bucket_height, round(height * bucket_width / width)))
    crop = ((resized[0] - bucket_width) // 2, (resized[1] - bucket_height) // 2)
    return Placement(bucket, resized, crop)


def place(image: Size, buckets: Sequence[Size] | None, resolution: int, steps: int, no_upscale: bool) -> Placement:
    """Bucket, resize and crop for an image of ``image`` pixels (``buckets=None``: square ``resolution``)."""
    if buckets is None:
        return _cover(image, (resolution, resolution))
    width, height = image
    if no_upscale:
        area = resolution * resolution
        if width * height > area:
            ratio = math.sqrt(area / (width * height))
            width, height = max(steps, int(width * ratio)), max(steps, int(height * ratio))
        bucket = (max(steps, width // steps * steps), max(steps, height // steps * steps))
        return _cover(image, bucket)
    if image in buckets:
        return Placement(image, image, (0, 0))
    aspect = width / height
    bucket = min(buckets, key=lambda b: abs(b[0] / b[1] - aspect))
    return _cover(image, bucket)


def batches_for_epoch(buckets_of: Sequence[Size], batch_size: int, seed: int) -> list[list[int]]:
    """Sample indices grouped into batches that never mix buckets, shuffled with ``seed``."""
    rng = random.Random(seed)
    groups: dict[Size, list[int]] = defaultdict(list)
    for index, bucket in enumerate(buckets_of):
        groups[bucket].append(index)
    batches: list[list[int]] = []
    for bucket in sorted(groups):
        members = groups[bucket]
        rng.shuffle(members)
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    rng.shuffle(batches)
    return batches


def bucket_info(placements: Sequence[Placement], images: Sequence[Size]) -> dict:
    """``ss_bucket_info``: per-bucket counts and the mean aspect-ratio error."""
    counts: dict[Size, int] = defaultdict(int)
    errors = []
    for placement, image in zip(placements, images, strict=True):
        counts[placement.bucket] += 1
        errors.append(abs(placement.bucket[0] / placement.bucket[1] - image[0] / image[1]))
    return {
        "buckets": {str(i): {"resolution": list(size), "count": counts[size]} for i, size in enumerate(sorted(counts))},
        "mean_img_ar_error": sum(errors) / len(errors) if errors else 0.0,
    }
