"""systemd's own config file parser, called through ctypes: config_parse() and
config_parse_many() of libsystemd-shared (systemd 252), each assignment handed to a Python
callback instead of a setting. What the tests compare our reading of journald.conf, unit files
and timesyncd.conf with."""

from __future__ import annotations

import ctypes
import glob
from pathlib import Path

_LIBS = sorted(glob.glob("/usr/lib/*/systemd/libsystemd-shared-*.so"))

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_char_p,
                             ctypes.c_uint, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                             ctypes.c_void_p)
_LOOKUP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.POINTER(_CALLBACK), ctypes.POINTER(ctypes.c_int),
                           ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)
_STRV = ctypes.POINTER(ctypes.c_char_p)


def available() -> bool:
    return bool(_LIBS)


class SystemdParser:
    """`parse(path, sections)` and `parse_many(mains, dirs, dropin_dir, sections)` (the first
    main file that exists, then the drop-ins of every `dir/dropin_dir`): (return
    value, [(section, key, value), ...]) as systemd's parser hands them on (negative: it
    stopped on an error)."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(_LIBS[-1])
        self.got: list[tuple[str, str, str]] = []

        def on_assignment(unit, filename, line, section, section_line, lvalue, ltype, rvalue, data, userdata):
            self.got.append((section.decode(), lvalue.decode(), rvalue.decode()))
            return 0

        def lookup(table, section, lvalue, ret_func, ret_ltype, ret_data, userdata):
            ret_func[0] = self._callback
            ret_ltype[0] = 0
            ret_data[0] = None
            return 1

        # kept on the object: ctypes callbacks must outlive every call that may use them
        self._callback = _CALLBACK(on_assignment)
        self._lookup = _LOOKUP(lookup)
        self._table = ctypes.c_int(0)  # config_parse_many() asserts a table; the lookup ignores it
        self.lib.config_parse.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p,
                                          _LOOKUP, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                          ctypes.c_void_p]
        self.lib.parse_size.argtypes = [ctypes.c_char_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)]
        self.lib.parse_boolean.argtypes = [ctypes.c_char_p]
        self.lib.path_simplify_and_warn.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_char_p, ctypes.c_char_p,
                                                    ctypes.c_uint, ctypes.c_char_p]
        self.lib.config_parse_many.argtypes = [_STRV, _STRV, ctypes.c_char_p, ctypes.c_char_p, _LOOKUP,
                                               ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                               ctypes.c_void_p]

    @staticmethod
    def _nulstr(sections: list[str]) -> bytes:
        return b"".join(s.encode() + b"\0" for s in sections)

    def parse(self, path: Path, sections: list[str]) -> tuple[int, list[tuple[str, str, str]]]:
        self.got = []
        r = self.lib.config_parse(None, str(path).encode(), None, self._nulstr(sections), self._lookup,
                                  ctypes.byref(self._table), 0, None, None)
        return r, self.got

    def parse_many(self, mains: list[Path], dirs: list[Path], dropin_dir: str,
                   sections: list[str]) -> tuple[int, list[tuple[str, str, str]]]:
        def strv(items: list[str]) -> ctypes.Array[ctypes.c_char_p]:
            return (ctypes.c_char_p * (len(items) + 1))(*[i.encode() for i in items], None)

        self.got = []
        r = self.lib.config_parse_many(strv([str(m) for m in mains]), strv([str(d) for d in dirs]), dropin_dir.encode(),
                                       self._nulstr(sections), self._lookup, ctypes.byref(self._table), 0, None,
                                       None, None)
        return r, self.got

    def parse_size(self, text: str) -> int | None:
        """parse_size(text, 1024): the bytes, or None where systemd refuses it."""
        value = ctypes.c_uint64()
        return value.value if self.lib.parse_size(text.encode(), 1024, ctypes.byref(value)) >= 0 else None

    def absolute_path(self, text: str) -> str | None:
        """path_simplify_and_warn(PATH_CHECK_ABSOLUTE), as config_parse_path_or_ignore() uses it:
        the path simplified, or None where systemd refuses it."""
        buf = ctypes.create_string_buffer(text.encode())
        r = self.lib.path_simplify_and_warn(buf, 1 << 1, None, b"oracle", 1, b"Path")
        return None if r < 0 else buf.value.decode()

    def parse_boolean(self, text: str) -> bool | None:
        r = self.lib.parse_boolean(text.encode())
        return None if r < 0 else bool(r)
