"""Names a user typed that name nothing (a standard, a profile, a rule id, a command): the
error lists the known ones and says which was probably meant."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from secpolicy.errors import InputError

__all__ = ["suggest", "unknown_name"]


def suggest(value: str, known: Iterable[str]) -> str | None:
    """The known name `value` most likely meant: a unique one it is a prefix of, a unique one
    equal but for case or `_`/`-`, or the closest by spelling."""
    names = sorted(set(known))
    if not value or not names:
        return None
    norm = value.lower().replace("_", "-")
    same = [n for n in names if n.lower().replace("_", "-") == norm]
    if len(same) == 1:
        return same[0]
    starts = [n for n in names if n.lower().startswith(norm)]
    if len(starts) == 1:
        return starts[0]
    import difflib  # only when a name is wrong: a run whose names are all right never loads it

    close = difflib.get_close_matches(norm, names, n=1, cutoff=0.6)
    if close:
        return close[0]
    # An abbreviation: the letters in order, from the first (`md` for markdown).
    abbrev = [n for n in names if n.lower().startswith(norm[0]) and _in_order(norm, n.lower())]
    return abbrev[0] if len(abbrev) == 1 else None


def _in_order(letters: str, word: str) -> bool:
    it = iter(word)
    return all(c in it for c in letters)


def _listing(names: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def unknown_name(what: str, value: str, known: Iterable[str]) -> InputError:
    """`unknown standard 'pci' (known: cis, pci-dss, ...); did you mean 'pci-dss'?`; for
    long lists (rule ids) the names nearest to `value` instead of all of them."""
    names = sorted(set(known))
    hint = suggest(value, names)
    if len(names) > 40:
        import difflib

        near = [n for n in names if n.startswith(value)][:10] or difflib.get_close_matches(value, names, n=8, cutoff=0.4)
        known_text = f"{len(names)} known" + (f"; nearest: {', '.join(near)}" if near else "")
        text = f"unknown {what} {value!r} ({known_text})"
    else:
        text = f"unknown {what} {value!r} (known: {_listing(names) or 'none'})"
    if hint:
        text += f"; did you mean {hint!r}?"
    return InputError(text)
