"""Benchmark the dataset editor on a large version: load, filter, batch edit, save.

    python bench/dataset.py [--images 5000] [--tags 30] [--repeat 5]

Writes tiny images and caption files into a temp folder (images are never
decoded on load), then times loading the captions, filtering, batch edits on the
filtered rows, tag counts, undo and a full save. Targets from issue 6: filter +
batch edit ≤ 100 ms, loading a 5 000-image version ≤ 2 s. The last line is
``RESULT key=value …`` for scripts.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from lora_ext.dataset.editor import Editor  # noqa: E402
from lora_ext.dataset.files import CaptionStore  # noqa: E402
from lora_ext.dataset.ingest import ingest  # noqa: E402
from lora_ext.dataset.table import TagFilter  # noqa: E402


def tiny_png() -> bytes:
    """A 4×4 grey PNG; every image file in the benchmark is a copy of it."""
    buffer = io.BytesIO()
    Image.new("L", (4, 4), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def build_dataset(folder: Path, images: int, tags_per_image: int, seed: int = 0) -> list[str]:
    """Write ``images`` tiny PNGs with captions drawn from a Zipf-like vocabulary; returns the vocabulary."""
    rng = random.Random(seed)
    vocabulary = [f"tag {number}" for number in range(1, 801)]
    weights = [1.0 / rank for rank in range(1, len(vocabulary) + 1)]
    folder.mkdir(parents=True, exist_ok=True)
    image = tiny_png()
    for index in range(images):
        subfolder = folder / ("10_main" if index % 2 else "")
        subfolder.mkdir(exist_ok=True)
        tags: dict[str, None] = {}
        while len(tags) < tags_per_image:
            tags[rng.choices(vocabulary, weights)[0]] = None
        (subfolder / f"img{index:05d}.png").write_bytes(image)
        (subfolder / f"img{index:05d}.txt").write_text(", ".join(tags) + "\n", "utf-8")
    return vocabulary


def build_zip(path: Path, images: int) -> None:
    """A zip of ``images`` distinct small PNGs with captions in a ``5_bench`` folder."""
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(images):
            buffer = io.BytesIO()
            picture = Image.new("RGB", (64, 64), (index % 256, index // 256 % 256, 7))
            picture.save(buffer, format="PNG")
            archive.writestr(f"5_bench/img{index:05d}.png", buffer.getvalue())
            archive.writestr(f"5_bench/img{index:05d}.txt", f"tag {index % 50}, bench")


def timed(action: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median seconds over ``repeat`` runs, and the last result."""
    durations = []
    result: object = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--tags", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ingest", type=int, default=500, help="images in the zip for the ingestion timing")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tt-bench-dataset-") as temp:
        dataset = Path(temp) / "dataset"
        start = time.perf_counter()
        build_dataset(dataset, args.images, args.tags)
        print(f"wrote {args.images} images × {args.tags} tags in {time.perf_counter() - start:.1f} s")

        load_s, loaded = timed(lambda: CaptionStore(dataset, Path(temp) / "state").load(), args.repeat)
        table = loaded.table  # type: ignore[attr-defined]
        assert len(table) == args.images
        print(f"load captions:            {load_s * 1000:8.1f} ms  ({args.images} images, no image decoded)")

        editor = Editor(table)
        tag_filter = TagFilter(positive=frozenset({"tag 3"}), negative=frozenset({"tag 7"}))
        filter_s, shown = timed(lambda: editor.set_filter(tag_filter), args.repeat)
        print(f"filter (1 pos, 1 neg):    {filter_s * 1000:8.1f} ms  ({len(shown)} rows shown)")  # type: ignore[arg-type]

        counts_s, _counts = timed(editor.tag_counts, args.repeat)
        print(f"tag counts (shown rows):  {counts_s * 1000:8.1f} ms")

        def filter_and_edit() -> None:
            editor.set_filter(tag_filter)
            editor.add_tags("new tag", "prepend")
            editor.set_filter(tag_filter)  # the UI refreshes the gallery after an edit
            editor.undo()

        edit_s, _ = timed(filter_and_edit, args.repeat)
        print(f"filter + batch add + refilter + undo: {edit_s * 1000:.1f} ms")

        editor.set_filter(TagFilter())
        replace_s, _ = timed(
            lambda: (editor.replace(r"^tag (\d)$", r"single \1", regex=True), editor.undo()), args.repeat
        )
        print(f"regex replace, all rows:  {replace_s * 1000:8.1f} ms")
        sort_s, _ = timed(lambda: (editor.sort("frequency"), editor.undo()), args.repeat)
        print(f"sort by frequency, all:   {sort_s * 1000:8.1f} ms")

        editor.add_tags("saved tag")
        store = CaptionStore(dataset, Path(temp) / "state")
        store.load()
        start = time.perf_counter()
        saved = store.save(editor.table)
        save_s = time.perf_counter() - start
        print(f"save all captions:        {save_s * 1000:8.1f} ms  ({len(saved.written)} files, with backup + journal)")

        build_zip(Path(temp) / "drop.zip", args.ingest)
        start = time.perf_counter()
        report = ingest([Path(temp) / "drop.zip"], Path(temp) / "ingested")
        ingest_s = time.perf_counter() - start
        assert len(report.added) == args.ingest, report.summary()
        per_image_ms = ingest_s * 1000 / args.ingest
        print(
            f"ingest zip:               {ingest_s * 1000:8.1f} ms  ({args.ingest} images + captions, {per_image_ms:.1f} ms each)"
        )

    worst_edit = max(edit_s, filter_s + replace_s, filter_s + sort_s)
    ok = load_s <= 2.0 and worst_edit <= 0.1
    print(f"targets: load ≤ 2 s, filter + batch edit ≤ 100 ms → {'met' if ok else 'NOT met'}")
    print(
        f"RESULT images={args.images} tags={args.tags} load_ms={load_s * 1000:.1f} filter_ms={filter_s * 1000:.1f} "
        f"filter_add_ms={edit_s * 1000:.1f} replace_ms={replace_s * 1000:.1f} sort_ms={sort_s * 1000:.1f} "
        f"counts_ms={counts_s * 1000:.1f} save_ms={save_s * 1000:.1f} ingest_ms_per_image={per_image_ms:.1f} "
        f"targets_met={str(ok).lower()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
