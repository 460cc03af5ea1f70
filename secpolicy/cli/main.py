"""Entry point: the `secpolicy` command group. Placeholder until the core lands."""
import click


@click.group()
def cli() -> None:
    """secpolicy: policy-as-code compliance scanning for Linux."""


def main() -> None:
    cli()
