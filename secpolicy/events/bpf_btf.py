"""Field offsets of kernel structs read from the running kernel's BTF (/sys/kernel/btf/vmlinux),
passed to the BPF program as constants so it never relies on the headers' struct layouts."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from secpolicy.errors import RuntimeFailure

__all__ = ["KPATH_OFFSETS", "VMLINUX_BTF", "KernelOffsets", "read_offsets", "struct_member_offset"]

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

_BTF_MAGIC = 0xEB9F
# Bytes that follow the 12-byte type header, per kind: (fixed, per vlen item).
_KIND_EXTRA = {
    1: (4, 0),  # INT
    2: (0, 0),  # PTR
    3: (12, 0),  # ARRAY
    4: (0, 12),  # STRUCT
    5: (0, 12),  # UNION
    6: (0, 8),  # ENUM
    7: (0, 0),  # FWD
    8: (0, 0),  # TYPEDEF
    9: (0, 0),  # VOLATILE
    10: (0, 0),  # CONST
    11: (0, 0),  # RESTRICT
    12: (0, 0),  # FUNC
    13: (0, 8),  # FUNC_PROTO
    14: (4, 0),  # VAR
    15: (0, 12),  # DATASEC
    16: (0, 0),  # FLOAT
    17: (4, 0),  # DECL_TAG
    18: (0, 0),  # TYPE_TAG
    19: (0, 12),  # ENUM64
}
_STRUCT, _UNION = 4, 5
_MODIFIERS = {8, 9, 10, 11, 18}  # typedef, volatile, const, restrict, type tag


class _Btf:
    """Just enough of a BTF reader to find struct members by name, nested anonymous
    structs and unions included."""

    def __init__(self, data: bytes) -> None:
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != _BTF_MAGIC:
            raise RuntimeFailure("not a little-endian BTF blob")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self.data = data
        self.types_start = hdr_len + type_off
        self.types_end = self.types_start + type_len
        self.strings_start = hdr_len + str_off
        self.strings = data[self.strings_start : self.strings_start + str_len]
        self.offsets: list[int] = [0]  # type id -> byte offset of its header (id 0 = void)
        # name offset -> the first struct with members of that name (what find_struct looks
        # up), noted in the one pass over the types rather than searched for per lookup
        self.structs: dict[int, int] = {}
        pos = self.types_start
        unpack = struct.unpack_from
        extra = _KIND_EXTRA
        append = self.offsets.append
        first_struct = self.structs.setdefault
        end = self.types_end
        while pos < end:
            name_off, info = unpack("<II", data, pos)
            kind = (info >> 24) & 0x1F
            if kind == _STRUCT and info & 0xFFFF:
                first_struct(name_off, len(self.offsets))
            append(pos)
            fixed, per = extra.get(kind, (0, 0))
            pos += 12 + fixed + per * (info & 0xFFFF)

    def name(self, name_off: int) -> str:
        end = self.strings.index(b"\0", name_off)
        return self.strings[name_off:end].decode()

    def header(self, tid: int) -> tuple[int, int, int, int]:
        name_off, info, size_or_type = struct.unpack_from("<III", self.data, self.offsets[tid])
        return name_off, (info >> 24) & 0x1F, info, size_or_type

    def find_struct(self, name: str) -> int | None:
        wanted = b"\0" + name.encode() + b"\0"
        at = self.strings.find(wanted)
        candidates = set()
        while at != -1:
            candidates.add(at + 1)
            at = self.strings.find(wanted, at + 1)
        found = [self.structs[c] for c in candidates if c in self.structs]
        return min(found) if found else None

    def resolve(self, tid: int) -> int:
        while True:
            _, kind, _, ref = self.header(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = ref

    def member(self, tid: int, name: str) -> tuple[int, int] | None:
        """(byte offset, member type id) of `name` in struct/union `tid`, searching anonymous
        members; None when absent. Bitfields are not supported (not needed here)."""
        _, kind, info, _ = self.header(tid)
        if kind not in (_STRUCT, _UNION):
            return None
        kind_flag = info >> 31
        base = self.offsets[tid] + 12
        for i in range(info & 0xFFFF):
            m_name, m_type, m_off = struct.unpack_from("<III", self.data, base + 12 * i)
            bit_off = m_off & 0xFFFFFF if kind_flag else m_off
            if m_name == 0:
                inner = self.member(self.resolve(m_type), name)
                if inner is not None:
                    return bit_off // 8 + inner[0], inner[1]
            elif self.name(m_name) == name:
                return bit_off // 8, m_type
        return None


def struct_member_offset(btf: _Btf, struct_name: str, path: str) -> int | None:
    """Offset of a dotted member path (`__sk_common.skc_num`) inside `struct struct_name`."""
    tid = btf.find_struct(struct_name)
    if tid is None:
        return None
    total = 0
    for part in path.split("."):
        found = btf.member(btf.resolve(tid), part)
        if found is None:
            return None
        off, tid = found
        total += off
    return total


@dataclass(frozen=True)
class KernelOffsets:
    """Offsets the BPF program needs; a member missing from this kernel is left out, and the
    program then omits the fields that depend on it."""

    values: dict[str, int]

    @property
    def kernel_paths(self) -> bool:
        """Whether the BPF side can resolve paths itself (every offset the walk needs)."""
        return all(k in self.values for k in KPATH_OFFSETS)

    def cflags(self) -> list[str]:
        flags = [f"-DSP_OFF_{k}={v}" for k, v in sorted(self.values.items())]
        return [*flags, "-DSP_KPATH"] if self.kernel_paths else flags


# (macro suffix, struct, member path)
_WANTED = (
    ("TASK_TGID", "task_struct", "tgid"),
    ("TASK_REAL_PARENT", "task_struct", "real_parent"),
    ("TASK_CRED", "task_struct", "cred"),
    ("TASK_LOGINUID", "task_struct", "loginuid"),
    ("TASK_SESSIONID", "task_struct", "sessionid"),
    ("TASK_FILES", "task_struct", "files"),
    ("TASK_START_TIME", "task_struct", "start_time"),
    ("TASK_GROUP_LEADER", "task_struct", "group_leader"),
    ("CRED_UID", "cred", "uid"),
    ("CRED_GID", "cred", "gid"),
    ("CRED_EUID", "cred", "euid"),
    ("CRED_EGID", "cred", "egid"),
    ("CRED_CAP_EFFECTIVE", "cred", "cap_effective"),
    ("FILES_FDT", "files_struct", "fdt"),
    ("FDT_FD", "fdtable", "fd"),
    ("FDT_MAX_FDS", "fdtable", "max_fds"),
    ("FILE_PRIVATE_DATA", "file", "private_data"),
    ("SOCKET_TYPE", "socket", "type"),
    ("SOCKET_SK", "socket", "sk"),
    ("SK_FAMILY", "sock", "__sk_common.skc_family"),
    ("SK_DADDR", "sock", "__sk_common.skc_daddr"),
    ("SK_RCV_SADDR", "sock", "__sk_common.skc_rcv_saddr"),
    ("SK_DPORT", "sock", "__sk_common.skc_dport"),
    ("SK_NUM", "sock", "__sk_common.skc_num"),
    ("SK_V6_DADDR", "sock", "__sk_common.skc_v6_daddr"),
    ("SK_V6_RCV_SADDR", "sock", "__sk_common.skc_v6_rcv_saddr"),
    ("SK_PROTOCOL", "sock", "sk_protocol"),
    # paths resolved in the kernel: task->fs->pwd, mm->exe_file, file->f_path, and the walk
    # up the dentry chain and the mount tree
    ("TASK_FS", "task_struct", "fs"),
    ("FS_PWD", "fs_struct", "pwd"),
    ("FS_ROOT", "fs_struct", "root"),
    ("TASK_MM", "task_struct", "mm"),
    ("MM_EXE_FILE", "mm_struct", "exe_file"),
    ("MM_ARG_START", "mm_struct", "arg_start"),
    ("MM_ARG_END", "mm_struct", "arg_end"),
    ("FILE_F_PATH", "file", "f_path"),
    # a watched file by inode, whatever name it is opened by (file->f_inode, its i_ino, link
    # count and its super_block's s_dev)
    ("FILE_F_INODE", "file", "f_inode"),
    ("INODE_I_INO", "inode", "i_ino"),
    ("INODE_I_SB", "inode", "i_sb"),
    ("INODE_I_NLINK", "inode", "__i_nlink"),
    ("SB_S_DEV", "super_block", "s_dev"),
    ("PATH_MNT", "path", "mnt"),
    ("PATH_DENTRY", "path", "dentry"),
    ("DENTRY_D_PARENT", "dentry", "d_parent"),
    ("DENTRY_D_NAME", "dentry", "d_name"),
    ("QSTR_LEN", "qstr", "len"),
    ("QSTR_NAME", "qstr", "name"),
    ("VFSMOUNT_MNT_ROOT", "vfsmount", "mnt_root"),
    ("MOUNT_MNT", "mount", "mnt"),
    ("MOUNT_MNT_PARENT", "mount", "mnt_parent"),
    ("MOUNT_MNT_MOUNTPOINT", "mount", "mnt_mountpoint"),
    # path operations submitted through io_uring: the request's command area (struct io_open,
    # io_unlink, io_mkdir, io_link, io_rename, io_xattr) and the kernel's copy of the path (struct filename)
    ("IO_KIOCB_CMD", "io_kiocb", "cmd"),
    ("IO_OPEN_DFD", "io_open", "dfd"),
    ("IO_OPEN_FILENAME", "io_open", "filename"),
    ("IO_OPEN_HOW", "io_open", "how"),
    ("IO_OPEN_FILE_SLOT", "io_open", "file_slot"),
    ("IO_UNLINK_DFD", "io_unlink", "dfd"),
    ("IO_UNLINK_FLAGS", "io_unlink", "flags"),
    ("IO_UNLINK_FILENAME", "io_unlink", "filename"),
    ("IO_MKDIR_DFD", "io_mkdir", "dfd"),
    ("IO_MKDIR_FILENAME", "io_mkdir", "filename"),
    ("IO_LINK_NEW_DFD", "io_link", "new_dfd"),
    ("IO_LINK_NEWPATH", "io_link", "newpath"),
    ("IO_RENAME_OLD_DFD", "io_rename", "old_dfd"),
    ("IO_RENAME_NEW_DFD", "io_rename", "new_dfd"),
    ("IO_RENAME_OLDPATH", "io_rename", "oldpath"),
    ("IO_RENAME_NEWPATH", "io_rename", "newpath"),
    ("IO_RENAME_FLAGS", "io_rename", "flags"),
    ("IO_XATTR_CTX", "io_xattr", "ctx"),
    ("IO_XATTR_FILENAME", "io_xattr", "filename"),
    ("KXATTR_KNAME", "kernel_xattr_ctx", "kname"),
    ("IO_KIOCB_CQE", "io_kiocb", "cqe"),
    ("IO_CQE_FD", "io_cqe", "fd"),
    ("FILENAME_NAME", "filename", "name"),
)

# Every offset the in-kernel path resolution needs (descriptors, relative paths, exe, cwd).
KPATH_OFFSETS = ("TASK_FILES", "FILES_FDT", "FDT_FD", "FDT_MAX_FDS", "FILE_PRIVATE_DATA", "TASK_FS", "FS_PWD",
                 "TASK_MM", "MM_EXE_FILE", "FILE_F_PATH", "PATH_MNT", "PATH_DENTRY", "DENTRY_D_PARENT",
                 "DENTRY_D_NAME", "QSTR_LEN", "QSTR_NAME", "VFSMOUNT_MNT_ROOT", "MOUNT_MNT", "MOUNT_MNT_PARENT",
                 "MOUNT_MNT_MOUNTPOINT")


def read_offsets(path: Path = VMLINUX_BTF) -> KernelOffsets:
    """Read the offsets from the kernel's BTF; raises RuntimeFailure when there is none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuntimeFailure(f"cannot read kernel BTF {path}: {exc.strerror}") from exc
    btf = _Btf(data)
    values: dict[str, int] = {}
    for macro, struct_name, member_path in _WANTED:
        off = struct_member_offset(btf, struct_name, member_path)
        if off is not None:
            values[macro] = off
    return KernelOffsets(values)
