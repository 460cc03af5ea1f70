"""Strict option values for the CLI: an unknown name is exit 2 listing the known ones, with a
"did you mean" for the closest (choices, standards, profiles, rule ids, subcommands)."""

from __future__ import annotations

from typing import Any

import click

from secpolicy.app.names import suggest, unknown_name

__all__ = ["SINK_FORMATS", "StrictChoice", "input_file", "suggest", "text_value", "unknown_name"]

# The alert formats of auditlog/sinks/formats.py (a test keeps them equal), named here so that
# the commands' options do not import the formatters.
SINK_FORMATS = ("cef", "json", "leef", "ocsf")


class StrictChoice(click.Choice):
    """click.Choice whose error also says which choice was probably meant."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as e:
            hint = suggest(str(value), [str(c) for c in self.choices])
            if not hint:
                raise
            raise click.BadParameter(f"{e.message} Did you mean {hint!r}?", ctx=ctx, param=param) from None


def input_file(what: str) -> Any:
    """Option callback for a file that is read whole: a device (`/dev/zero`), a socket or a
    directory is exit 2 before the run, never a read without end (outfile.check_input)."""
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        from secpolicy.outfile import check_input

        for path in value if isinstance(value, tuple) else (value,):
            if path is not None and path != "-":
                check_input(path, what)
        return value
    return check


def text_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Option callback for a name compared with stored text (a user, a rule id): bytes that
    are not UTF-8 (kept by Python as lone surrogates) can match nothing and cannot be sent to
    SQLite; exit 2 naming the option."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise click.BadParameter("is not UTF-8 text", ctx=ctx, param=param) from None
    return value
