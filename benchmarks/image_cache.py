"""Benchmark: the images task's cache. How much faster the second open of a listing is (the cache, memory-mapped)
than the first (every image decoded), and how much RAM a process that trains from the cache needs beside it.

    python benchmarks/image_cache.py                   # 5,000 PNGs of 64x64 RGB
    python benchmarks/image_cache.py --n 50000         # the issue's scale
    python benchmarks/image_cache.py --n 200 --size 16 # a smoke test

Writes --n random RGB PNG images (--size square, with a class label and a regression target) and their labels.csv
into a temporary folder (or --folder), then
- first load: open_task("images", ...) with no cache: every image decoded, resized (to --size: no resize work beyond
  the check) and written to .study-cache/; second load: the same again, now from the cache (stat of every image to
  check its identity, the record read, the .npy memory-mapped). Target (issue 20): first / second >= 20.
- memory: a fresh Python process imports the study, opens the cached listing, trains a warm-up epoch on 512 random
  images (torch's own allocations), then draws seed 0's splits and trains one epoch of single_head (small widths);
  its peak RSS (VmHWM) while drawing, minus its RSS after the warm-up, is what the data took; target: at most
  the cache file's size (the uint8 splits, copied out of the map chunk by chunk). The peak over the epoch too adds
  the training's own batches and activations (batch 256, which depend on the model, not on N).
Times are wall seconds of this machine; compare ratios, not seconds, between machines.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere: import `study`

HEADS = "label: classes\nvalue: regression\nimage_size: {size}\n"


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident set now (VmRSS), or its peak (VmHWM), MiB (Linux /proc). Not ru_maxrss: Linux keeps
    that across exec, so a child started by a big parent would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_listing(folder: Path, n: int, size: int) -> Path:
    import numpy as np
    import torch
    from torchvision.io import write_png

    (folder / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["path,label,value"]
    for i in range(n):
        image = torch.from_numpy(rng.integers(0, 256, size=(3, size, size), dtype=np.uint8))
        name = f"img/{i // 1000}/{i}.png"
        (folder / name).parent.mkdir(exist_ok=True)
        write_png(image, str(folder / name), compression_level=1)
        lines.append(f"{name},c{i % 5},{float(image.float().mean()):.3f}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    (folder / "labels.yaml").write_text(HEADS.format(size=size))
    return folder / "labels.csv"


def child(csv: str) -> None:
    """Open the cached listing, draw seed 0, train one epoch; print the RSS after imports and the peak, MiB."""
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    import torch

    from study.config.space import resolve_config
    from study.tasks import open_task
    from study.training.train import fit

    from study.tasks import Split, TaskData

    torch.set_num_threads(2)
    task = open_task("images", data=csv)  # cheap: stats, the record, the .npy's header
    config = task.with_settings(resolve_config("single_head", {"epochs": 1, "batch_size": 256, "width": 16,
                                                               "depth": 1, "channels": 4}, task="images"))
    # Warm-up on 512 random images: torch's allocator, thread pools and autograd take their memory first, so
    # what the real run adds after this point is the data's.
    fake = torch.randint(0, 256, (512, *task.spec.input_shape), dtype=torch.uint8)
    norm = (torch.full((1, fake.shape[1], 1, 1), 128.0), torch.full((1, fake.shape[1], 1, 1), 64.0))
    split = Split(fake, {name: t[torch.arange(512) % len(t)] for name, t in task.targets.items()}, None, norm)
    fit(config, TaskData(split, split, None, task.spec), device="cpu")
    before = rss_mib()
    data = task.draw(0, config)
    drawn = rss_mib("VmHWM")  # the peak so far
    data = data.without_test()  # as a tuning trial holds it
    fit(config, data, device="cpu")
    peak = rss_mib("VmHWM")
    print(f"RSS {before:.1f} {drawn:.1f} {peak:.1f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="images (default 5000)")
    parser.add_argument("--size", type=int, default=64, help="their side and image_size (default 64)")
    parser.add_argument("--folder", help="write the images here (default: a temporary folder, removed after)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29's decoders are deprecated for torchcodec
    from study.tasks import open_task

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.folder or scratch)
        start = time.perf_counter()
        csv = write_listing(folder, args.n, args.size)
        print(f"image_cache: {args.n} RGB PNGs of {args.size}x{args.size}, written in "
              f"{time.perf_counter() - start:.1f} s to {folder}")
        start = time.perf_counter()
        task = open_task("images", data=str(csv))
        first = time.perf_counter() - start
        start = time.perf_counter()
        open_task("images", data=str(csv))
        second = time.perf_counter() - start
        size = task.cache.stat().st_size / 2 ** 20
        print(f"first load (decode): {first:.3f} s  second load (cache): {second:.3f} s  ratio first/second = "
              f"{first / second:.1f} (target >= 20)")
        done = subprocess.run([sys.executable, __file__, "--child", str(csv)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if done.returncode != 0:
            sys.exit(f"the training process failed: {done.stderr[-2000:]}")
        before, drawn, peak = (float(v) for v in done.stdout.split("RSS", 1)[1].split())
        print(f"training process: RSS {before:.1f} MiB after imports and a warm-up; peak while drawing the splits "
              f"+{drawn - before:.1f} MiB, ratio to the cache's {size:.1f} MiB = {(drawn - before) / size:.2f} "
              f"(target <= 1); peak over draw + one epoch +{peak - before:.1f} MiB, ratio {(peak - before) / size:.2f}")


if __name__ == "__main__":
    main()
