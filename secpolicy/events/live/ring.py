"""The BPF ring buffer read directly through its shared mapping: one copy per batch of records
and no callback per record (the kernel's layout: include/uapi/linux/bpf.h, kernel/bpf/ringbuf.c)."""

from __future__ import annotations

import mmap
import struct

__all__ = ["PAGE", "RingBuffer"]

PAGE = mmap.PAGESIZE
# Each record starts with an 8-byte header: u32 length with the two flag bits, u32 page offset.
_BUSY_BIT = 1 << 31
_DISCARD_BIT = 1 << 30
_HDR_SZ = 8
_POS = struct.Struct("<Q")
_LEN = struct.Struct("<I")


class RingBuffer:
    """Consumer side of a BPF_MAP_TYPE_RINGBUF of `size` data bytes behind `map_fd`."""

    def __init__(self, map_fd: int, size: int) -> None:
        self.size = size
        self.mask = size - 1
        self.cons = mmap.mmap(map_fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        # Producer page, then the data area mapped twice so a record never wraps.
        self.prod = mmap.mmap(map_fd, PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=PAGE)

    def drain(self) -> tuple[bytes, list[tuple[int, int]]]:
        """All committed records: the bytes and (offset, length) of each record within them."""
        cons = _POS.unpack_from(self.cons, 0)[0]
        prod = _POS.unpack_from(self.prod, 0)[0]
        if cons == prod:
            return b"", []
        start = cons
        recs: list[tuple[int, int]] = []
        mask = self.mask
        data = self.prod
        unpack_len = _LEN.unpack_from
        while cons < prod:
            hdr = unpack_len(data, PAGE + (cons & mask))[0]
            if hdr & _BUSY_BIT:
                break
            ln = hdr & ~(_BUSY_BIT | _DISCARD_BIT)
            if not hdr & _DISCARD_BIT:
                recs.append((cons - start + _HDR_SZ, ln))
            cons += (ln + _HDR_SZ + 7) & ~7
        if cons == start:
            return b"", []
        off = PAGE + (start & mask)
        chunk = data[off : off + (cons - start)]
        _POS.pack_into(self.cons, 0, cons)
        return chunk, recs

    def close(self) -> None:
        self.cons.close()
        self.prod.close()
