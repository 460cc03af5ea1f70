"""Strict option values for the CLI: an unknown name is exit 2 listing the known ones, with a
"did you mean" for the closest (choices, standards, profiles, rule ids, subcommands)."""

from __future__ import annotations

from typing import Any

import click

from secpolicy.app.names import suggest, unknown_name

__all__ = ["SINK_FORMATS", "StrictChoice", "suggest", "unknown_name"]

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
