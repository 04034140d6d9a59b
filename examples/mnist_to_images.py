"""Export MNIST as image files listed in a labels CSV: the images task's format (the face-age question's shape).

    python examples/mnist_to_images.py --data-dir ../shared/data --n 6000 --out mnist_images
    python -m study.compare --task images --data mnist_images/labels.csv --families single_head,split_heads

Written (N = --n images drawn at random, with --seed, from MNIST's training set):
    <out>/images/00000.png ...   28x28 grey PNG files, one per image
    <out>/labels.csv             path (relative to the CSV), digit (0-9), value (the digit as a number, 0.0-9.0)
    <out>/labels.yaml            the heads: digit is a 10-class head, value a regression head trained with L1;
                                 image_size (--size, default 16: the images are resized to 16x16 when loaded)

The question it asks, as a face-age study asked it: does a second head that regresses the same label (the digit as
a number, with an L1 loss) help the classifier? `split_heads` trains both heads on one trunk (the value head
weighted by the searched aux_weight); `single_head` trains the digit head alone.
"""

import argparse
import csv
import warnings
from pathlib import Path

import torch
from torchvision.datasets import MNIST
from torchvision.io import write_png

# torchvision 0.29 deprecates its image codecs in favour of torchcodec; they still write PNG files faithfully
warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)

HEADS = """\
# heads of labels.csv: one 'column: kind' line per label column (binary, regression[:l1|mse|huber], classes:N,
# or ignore); the image paths are in the column 'path'
digit: classes:10
value: regression:l1
image_size: {size}  # the 28x28 images resized to this side
"""

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
parser.add_argument("--data-dir", default="./data", help="where torchvision's MNIST lies (MNIST/raw)")
parser.add_argument("--n", type=int, default=6000, help="images to export (at most 60000)")
parser.add_argument("--out", default="mnist_images", help="the folder to write (created)")
parser.add_argument("--seed", type=int, default=0, help="which images are drawn")
parser.add_argument("--size", type=int, default=16, help="the image_size the heads file sets (at most 28)")
args = parser.parse_args()

mnist = MNIST(args.data_dir, train=True, download=False)
if not 1 <= args.n <= len(mnist.data):
    parser.error(f"--n must be in [1, {len(mnist.data)}], got {args.n}")
index = torch.randperm(len(mnist.data), generator=torch.Generator().manual_seed(args.seed))[:args.n]
out = Path(args.out)
(out / "images").mkdir(parents=True, exist_ok=True)
rows = []
for k, i in enumerate(index.tolist()):
    path = f"images/{k:05d}.png"
    write_png(mnist.data[i].unsqueeze(0), str(out / path))  # (1, 28, 28) uint8: a grey PNG
    digit = int(mnist.targets[i])
    rows.append((path, digit, float(digit)))
with open(out / "labels.csv", "w", newline="") as file:
    writer = csv.writer(file)
    writer.writerow(["path", "digit", "value"])
    writer.writerows(rows)
(out / "labels.yaml").write_text(HEADS.format(size=args.size))
print(f"wrote {len(rows)} images under {out / 'images'}, {out / 'labels.csv'} and {out / 'labels.yaml'}")
