"""The record the BPF programs send (struct sp_event in bpf/secpolicy.h): its header layout,
the SP_* numbers shared with the C side, and the names of event types and probes by id."""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

from secpolicy.errors import RuntimeFailure
from secpolicy.resources import bpf_dir

__all__ = [
    "HDR",
    "HEADER_FIELDS",
    "ID_OF_TYPE",
    "OFF",
    "PROBE_OF_ID",
    "TYPE_OF_ID",
    "C",
    "Header",
    "header_constants",
]


def header_constants() -> dict[str, int]:
    """The SP_* numbers of bpf/secpolicy.h, the one definition shared with the BPF side."""
    text = (bpf_dir() / "secpolicy.h").read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define (SP_\w+) (-?\d+)\s*$", text, re.MULTILINE)}



class Header(NamedTuple):
    """struct sp_event up to its string area, member by member in the C order (a test compares
    the two): the record layout is derived from this class, never written down twice."""

    ts: int
    cgroup_id: int
    start_time: int
    ret: int
    a0: int
    a1: int
    a2: int
    a3: int
    a4: int
    a5: int
    type: int
    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    euid: int
    egid: int
    auid: int
    session: int
    str_len: int
    nstr: int
    flags: int
    comm: bytes
    lost_seq: int


_FORMATS = {"ts": "Q", "cgroup_id": "Q", "start_time": "Q", "ret": "q", "type": "I", "str_len": "H", "nstr": "B", "flags": "B",
            "comm": "16s"}
HEADER_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (n, _FORMATS.get(n, "Q" if n[0] == "a" and n[1:].isdigit() else "I")) for n in Header._fields)
HDR = struct.Struct("<" + "".join(f for _n, f in HEADER_FIELDS))
OFF: dict[str, int] = {
    n: struct.calcsize("<" + "".join(f for _m, f in HEADER_FIELDS[:i])) for i, (n, _f) in enumerate(HEADER_FIELDS)
}

C = header_constants()
if C["SP_HDR_SIZE"] != HDR.size:  # the header and this decoder must agree
    raise RuntimeFailure(f"bpf/secpolicy.h record header is {C['SP_HDR_SIZE']} bytes, decoder expects {HDR.size}")

TYPE_OF_ID = {v: k[6:].lower() for k, v in C.items() if k.startswith("SP_EV_") and k != "SP_EV_MAX"}
ID_OF_TYPE = {v: k for k, v in TYPE_OF_ID.items()}
PROBE_OF_ID = {v: k[5:].lower() for k, v in C.items() if k.startswith("SP_P_")}
