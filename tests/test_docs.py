"""The README and docs/ stay honest without running anything: every shell block says whether docs/check_docs.py
runs it or what covers it, every file it names exists, every link resolves, and the README stays a front door."""

from __future__ import annotations

import re
import sys

from helpers import REPO

sys.path.insert(0, str(REPO / "docs"))
import check_docs  # noqa: E402  (docs/check_docs.py: the runner of the marked blocks)

LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
COMMAND = re.compile(r"^\s*(\$ )?python3? (-m study|\S+\.py)")


def test_every_shell_block_is_run_by_the_docs_check_or_names_what_covers_it():
    pages = check_docs.PAGES
    assert {p.name for p in (REPO / "docs").glob("*.md")} == {p.split("/")[-1] for p in pages if p != "README.md"}
    blocks = [block for page in pages for block in check_docs.blocks(page)]
    shell = [b for b in blocks if b.language in ("bash", "sh", "shell", "console")]
    assert len(shell) >= 10
    unmarked = [b.where for b in shell if b.action not in ("run", "skip")]
    assert not unmarked, f"shell blocks without a docs-check marker: {unmarked}"
    assert all(b.argument for b in shell if b.action == "skip"), "a skipped block must say what covers it"
    # a command line outside a shell block (an indented block, a plain fence) would escape the check
    for page in pages:
        inside = {(b.page, b.line + k) for b in shell for k in range(1, b.text.count("\n") + 1)}
        for number, line in enumerate((REPO / page).read_text().splitlines(), start=1):
            if COMMAND.match(line):
                assert (page, number) in inside, f"{page}:{number} is a command outside a marked shell block"
    # the files a run block uses are written by a file block before it
    written = {b.argument for b in blocks if b.action == "file"}
    assert {"my_families.py", "wide_mlp.yaml"} <= written
    for block in (b for b in shell if b.action == "run"):
        code = "\n".join(line.partition(" #")[0] for line in block.text.splitlines())
        for name in re.findall(r"\./([\w.-]+\.(?:py|yaml))", code):
            assert name in written, f"{block.where} uses {name}, which no docs-check file block writes"


def test_the_tiny_budgets_replace_the_documented_ones_and_drop_the_set_up():
    line = 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m study.tune --family x'
    assert check_docs.shrink(line, have_gpu=False) == ("python -m study.tune --family x " + " ".join(check_docs.SEARCH))
    shrunk = check_docs.shrink("python -m study.compare --families a,b --study-seeds 3 --gpus-per-trial 0.25  # c",
                               have_gpu=False)
    assert "--study-seeds 2 " in shrunk and "--gpus-per-trial" not in shrunk and shrunk.endswith("  # c")
    assert "--gpus-per-trial 0.25" in check_docs.shrink("python -m study.rerun --gpus-per-trial 0.25", have_gpu=True)


def test_every_link_resolves_and_the_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in check_docs.PAGES:
        text = (REPO / page).read_text()
        for target, _ in LINK.findall(text):
            if "://" in target:
                continue
            assert ((REPO / page).parent / target).exists(), f"{page} links to {target}, which does not exist"
    for page in check_docs.PAGES[1:]:
        assert f"]({page})" in readme, f"the README does not link {page}"
