"""`python -m study`: what this is, its version (`--version`) and its commands, each `python -m study.<command>`."""

from __future__ import annotations

import importlib.metadata

from study import DISTRIBUTION, __doc__ as ABOUT
from study.infra.cli import ArgumentParser, run_as_command

# (command, what it does); each is `python -m study.<command> --help` for its flags
COMMANDS = (
    ("tune", "search one family's hyperparameters, then rerun its best config on many seeds into MLflow"),
    ("compare", "search and rerun several families with equal budgets and write one report"),
    ("rerun", "rerun one config on many seeds into MLflow"),
    ("report", "compare the families of an MLflow experiment: CIs, paired tests, effect sizes"),
    ("fit", "train one config once and print its metrics every epoch"),
    ("families", "list the families of every task and their hyperparameters"),
)


def version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # imported from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m study", description=ABOUT)
    parser.add_argument("--version", action="version", version=f"{DISTRIBUTION} {version()}")
    parser.parse_args(argv)
    width = max(len(name) for name, _ in COMMANDS)
    print("commands (python -m study.<command> --help for each one's flags):")
    for name, does in COMMANDS:
        print(f"  {name:<{width}}  {does}")
    return 0


if __name__ == "__main__":
    run_as_command(main)
