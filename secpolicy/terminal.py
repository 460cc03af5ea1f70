"""Text read from a host, a log or an event, made inert for a terminal: what the text and
table outputs print must not move the cursor, set the window title, write the clipboard
(OSC 52) or reorder what a reader sees (bidirectional controls)."""

from __future__ import annotations

__all__ = ["inert", "inert_line"]

_KEEP = frozenset("\n\t")
_LINE = frozenset("\t")


def inert(text: str, keep: frozenset[str] = _KEEP) -> str:
    """`text` with every character that is not printable (C0 and C1 controls, DEL, format
    characters such as bidi overrides, unpaired surrogates of undecodable bytes) shown as
    `\\xNN` escapes of its bytes; newlines and tabs are kept unless `keep` says otherwise."""
    if text.isprintable():
        return text
    rest = text
    for ch in keep:
        rest = rest.replace(ch, "")
    if rest.isprintable():  # only kept characters (line breaks): nothing to escape
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch in keep:
            out.append(ch)
            continue
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{o - 0xDC00:02x}")
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass")))
    return "".join(out)


def inert_line(text: str) -> str:
    """`inert(text)` that also escapes newlines (`\\x0a`): a value printed on one line of
    output cannot start a line of its own (a forged finding in piped or `grep`ped output)."""
    return inert(text, _LINE)
