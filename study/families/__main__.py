"""`python -m study.families [--plugin MODULE]`: every registered family, by task, with its hyperparameters."""

from study.infra import cli


def main(argv: list[str] | None = None) -> int:
    parser = cli.make_parser("study.families", __doc__.splitlines()[0], "python -m study.families --plugin ./mine.py")
    cli.add_plugin_flag(parser)
    cli.load_plugins(parser.parse_args(argv))

    from study.families import FAMILIES, families_of, family_hyperparameters
    from study.tasks import TASKS

    for task in sorted(TASKS):
        print(f"{task}:")
        for family in families_of(task):
            print(f"  {family:14s} {', '.join(family_hyperparameters(family))}  ({FAMILIES.modules[family]})")
    return 0


if __name__ == "__main__":
    cli.run_as_command(main)
