"""Export MNIST to the arrays task's format: one .npz file and the heads YAML beside it.

    python examples/mnist_to_arrays.py --data-dir ../shared/data --n 12000 --out mnist12k.npz
    python -m study.fit --task arrays --data mnist12k.npz --family split_heads

Arrays written (N = --n images drawn at random, with --seed, from MNIST's training set):
    x       (N, 1, 28, 28) uint8 images, or (N, 784) with --flat; --pool 2 average-pools to 14x14 first
    digit   (N,) the digit, 10 classes                           -> digit: classes:10
    value   (N,) the digit as a number, 0.0 to 9.0                -> value: regression
    mod3    (N,) the digit modulo 3, a second label set (3 classes)  -> mod3: classes:3

No `split` array: the task draws the splits (a fixed test part, val by run seed).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.datasets import MNIST

HEADS = """\
# heads of {name}: one 'name: kind' line per array (binary, regression, classes:N, or ignore)
digit: classes:10
value: regression
mod3: classes:3
"""

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
parser.add_argument("--data-dir", default="./data", help="where torchvision's MNIST lies (MNIST/raw)")
parser.add_argument("--n", type=int, default=12000, help="images to export (at most 60000)")
parser.add_argument("--out", default="mnist.npz", help="the .npz file; the heads go to the same stem .yaml")
parser.add_argument("--flat", action="store_true", help="feature vectors (N, D) instead of images (N, 1, H, W)")
parser.add_argument("--pool", type=int, default=1, help="average-pool the images by this factor (2: 14x14)")
parser.add_argument("--seed", type=int, default=0, help="which images are drawn")
args = parser.parse_args()

mnist = MNIST(args.data_dir, train=True, download=False)
if not 1 <= args.n <= len(mnist.data):
    parser.error(f"--n must be in [1, {len(mnist.data)}], got {args.n}")
index = torch.randperm(len(mnist.data), generator=torch.Generator().manual_seed(args.seed))[:args.n]
images = mnist.data[index].unsqueeze(1)  # (N, 1, 28, 28) uint8
if args.pool > 1:  # pooling averages pixels: round back to uint8 to keep the file small
    images = F.avg_pool2d(images.float(), args.pool).round().to(torch.uint8)  # (N, 1, 28 / p, 28 / p)
x = images.flatten(1) if args.flat else images  # (N, D) or (N, 1, H, W)
digit = mnist.targets[index].numpy()  # (N,) int64

out = Path(args.out)
np.savez_compressed(out, x=x.numpy(), digit=digit, value=digit.astype(np.float32), mod3=digit % 3)
out.with_suffix(".yaml").write_text(HEADS.format(name=out.name))
print(f"wrote {out} (x {tuple(x.shape)} uint8, digit, value, mod3) and {out.with_suffix('.yaml')}")
