"""Export MNIST as a table: one row per image, pooled pixels as numeric feature columns, two label columns (the
genomic-samples question's shape: many numeric columns, two label sets).

    python examples/mnist_to_table.py --data-dir ../shared/data --n 6000 --out mnist_table.csv
    python -m study.compare --task table --data mnist_table.csv --families joint_sigmoid,split_heads

Written (N = --n images drawn at random, with --seed, from MNIST's training set):
    <out>        a CSV (or Parquet, by the suffix .parquet): columns id, p00 ... p48 (the 28x28 image average-pooled
                 by --pool 4 to 7x7, 0-255), digit (0-9), big ("yes" for digits 5-9, else "no": a string label)
    <stem>.yaml  the heads: digit a 10-class head, big a binary head, id ignored

The question it asks: one sigmoid/BCE output layer over both label sets (`joint_sigmoid`) or a softmax/CE head per
label set (`split_heads`)? The report puts calibration (ECE, mean confidence minus accuracy) and per-class recall
beside accuracy.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchvision.datasets import MNIST

HEADS = """\
# heads of {name}: one 'column: kind' line per label column (binary, regression, classes:N, or ignore);
# every other column is a numeric feature
id: ignore
digit: classes:10
big: binary
"""

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
parser.add_argument("--data-dir", default="./data", help="where torchvision's MNIST lies (MNIST/raw)")
parser.add_argument("--n", type=int, default=6000, help="images to export (at most 60000)")
parser.add_argument("--out", default="mnist_table.csv", help="the table (.csv or .parquet); heads to <stem>.yaml")
parser.add_argument("--pool", type=int, default=4, help="average-pool the images by this factor (4: 7x7 features)")
parser.add_argument("--seed", type=int, default=0, help="which images are drawn")
args = parser.parse_args()

mnist = MNIST(args.data_dir, train=True, download=False)
if not 1 <= args.n <= len(mnist.data):
    parser.error(f"--n must be in [1, {len(mnist.data)}], got {args.n}")
index = torch.randperm(len(mnist.data), generator=torch.Generator().manual_seed(args.seed))[:args.n]
pooled = F.avg_pool2d(mnist.data[index].unsqueeze(1).float(), args.pool).round().flatten(1)  # (N, (28 / p)^2)
digit = mnist.targets[index].numpy()
table = pd.DataFrame(pooled.numpy().astype(np.uint8), columns=[f"p{k:02d}" for k in range(pooled.shape[1])])
table.insert(0, "id", index.numpy())
table["digit"] = digit
table["big"] = np.where(digit >= 5, "yes", "no")

out = Path(args.out)
if out.suffix == ".parquet":
    table.to_parquet(out, index=False)
else:
    table.to_csv(out, index=False)
out.with_suffix(".yaml").write_text(HEADS.format(name=out.name))
print(f"wrote {out} ({len(table)} rows: id, {pooled.shape[1]} feature columns, digit, big) and "
      f"{out.with_suffix('.yaml')}")
