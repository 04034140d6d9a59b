"""Run the shell blocks of README.md and docs/*.md that are marked runnable, with tiny budgets, so no documented
command rots.

Every fenced ```bash block of the docs is preceded by one marker (tests/test_docs.py checks that none is missing):

    <!-- docs-check: run -->               run the block (bash -euo pipefail) with tiny budgets
    <!-- docs-check: skip WHY -->          not run here; WHY names what covers it (a test, CI itself)
    <!-- docs-check: file NAME -->         (any fenced block) written to NAME in the working folder first

The blocks run in order (README first, then the pages of PAGES) in one temporary working folder, so a later block
sees what an earlier one wrote (`study.report` after `study.tune`). That folder is `<tmp>/work`, beside
`<tmp>/shared/data` (MNIST: $STUDY_DATA_DIR, or synthetic digits made here when it is unset), so the docs'
`--data-dir ../shared/data` resolves; HOME is `<tmp>/home`, whose `~/data` holds synthetic CIFAR-100 files in
torchvision's layout. `examples/` and `benchmarks/` are linked in from the checkout.

Tiny budgets: each command line is rewritten before it runs (the original stays in the docs):
- the set-up prefix `python3 -m venv .venv && .venv/bin/pip install ... &&` is dropped (this script already runs
  in an installed environment) and `.venv/bin/python` becomes `python`, the interpreter running this script;
- `study.tune` / `study.compare`: 2 trials of 1 epoch, no robust selection, 2 rerun seeds, at most 2 study seeds;
- `study.rerun`: 2 seeds of 1 epoch; `study.fit`: 1 epoch; the `examples/mnist_to_*.py` exports: 600 images;
- `--gpus-per-trial` is dropped where torch sees no GPU.
Flags are appended after the documented ones (argparse keeps the last), or replace the documented value.

    python docs/check_docs.py [--only PAGE ...] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "docs/main-job.md", "docs/comparing.md", "docs/presets.md", "docs/tasks.md",
         "docs/worked-examples.md", "docs/families-and-plugins.md", "docs/interruptions.md", "docs/cluster.md",
         "docs/benchmarks.md", "docs/layout.md"]
MARKER = re.compile(r"^<!-- docs-check: (run|skip|file)\b\s*(.*?)\s*-->$")
FENCE = re.compile(r"^```(\S*)")
BLOCK_TIMEOUT_S = 1800

SEARCH = ["--num-samples", "2", "--max-epochs", "1", "--grace-period", "1", "--select-top", "1", "--seeds", "2"]
APPENDED = {"study.tune": SEARCH, "study.compare": SEARCH, "study.rerun": ["--seeds", "2", "--epochs", "1"],
            "study.fit": ["--epochs", "1"]}
REPLACED = {"--study-seeds": "2", "--n": "600"}  # a documented value that a tiny run lowers
SET_UP = re.compile(r"^python3 -m venv \.venv && \.venv/bin/pip install [^&]*&& ")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    action: str  # run, skip or file
    argument: str  # skip: why; file: the file's name
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    """Every fenced block of a page with the marker above it (action "" when it has none)."""
    lines = (REPO / page).read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        marker = next((MARKER.match(lines[k]) for k in range(start - 1, -1, -1) if lines[k].strip()), None)
        action, argument = (marker.group(1), marker.group(2)) if marker else ("", "")
        found.append(Block(page, start + 1, action, argument, fence.group(1), "\n".join(lines[start + 1:i]) + "\n"))
        i += 1
    return found


def shrink(line: str, have_gpu: bool) -> str:
    """One logical command line with the tiny budgets of the module docstring."""
    line = SET_UP.sub("", line).replace(".venv/bin/python", "python")
    code, _, comment = line.partition(" #")
    for flag, value in REPLACED.items():
        code = re.sub(rf"(\s{re.escape(flag)}[ =])\S+", rf"\g<1>{value}", code)
    if not have_gpu:
        code = re.sub(r"\s--gpus-per-trial[ =]\S+", "", code)
    for module, extra in APPENDED.items():
        if re.search(rf"\bpython -m {re.escape(module)}\b", code):
            code = code.rstrip() + " " + " ".join(extra)
    return code.rstrip() + ("  #" + comment if comment else "")


def script(block: Block, have_gpu: bool) -> str:
    logical = block.text.replace("\\\n", " ")  # continuation lines joined, so flags land at the command's end
    return "\n".join(shrink(line, have_gpu) for line in logical.splitlines()) + "\n"


def prepare(root: Path) -> dict[str, str]:
    """The working folder, its data and environment; returns the environment the blocks run in."""
    sys.path.insert(0, str(REPO))
    from tests.helpers import make_fake_cifar100, make_fake_mnist

    work, data, home = root / "work", root / "shared" / "data", root / "home"
    work.mkdir(parents=True)
    home.mkdir()
    if os.environ.get("STUDY_DATA_DIR"):
        data.parent.mkdir(parents=True)
        data.symlink_to(Path(os.environ["STUDY_DATA_DIR"]).resolve())
    else:
        make_fake_mnist(data, n_train=6000, n_test=2000)
    make_fake_cifar100(home / "data", n_train=6000, n_test=500)
    for folder in ("examples", "benchmarks"):
        (work / folder).symlink_to(REPO / folder)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "STUDY_PLUGINS")}
    env.update(HOME=str(home), STUDY_DATA_DIR=str(data), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="pages to check (default: all of PAGES)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary working folder")
    args = parser.parse_args(argv)
    import torch

    have_gpu = torch.cuda.is_available()
    pages = [p for p in PAGES if args.only is None or any(p.endswith(o) for o in args.only)]
    root = Path(tempfile.mkdtemp(prefix="docs-check-"))
    env = prepare(root)
    work = root / "work"
    every = [b for page in pages for b in blocks(page)]
    for block in every:
        if block.action == "file":
            (work / block.argument).write_text(block.text)
    failed = 0
    for block in every:
        if block.action != "run":
            if block.action == "skip":
                print(f"skip {block.where}: {block.argument}")
            continue
        started = time.monotonic()
        try:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", script(block, have_gpu)], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
            ok, output = done.returncode == 0, done.stdout + done.stderr
        except subprocess.TimeoutExpired as timeout:
            ok, output = False, f"timed out after {BLOCK_TIMEOUT_S} s\n{timeout.stdout or ''}{timeout.stderr or ''}"
        print(f"{'ok  ' if ok else 'FAIL'} {block.where} ({time.monotonic() - started:.0f} s)", flush=True)
        if not ok:
            failed += 1
            print(script(block, have_gpu) + "".join(f"    {line}\n" for line in output.splitlines()[-40:]))
    print(f"{sum(b.action == 'run' for b in every)} blocks run, {failed} failed; working folder {root}")
    if not args.keep and not failed:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
