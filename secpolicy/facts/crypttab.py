"""`crypttab`: the encrypted volumes /etc/crypttab sets up at boot, read as Debian 12's
systemd-cryptsetup-generator (systemd 252) reads it, and, on the live host, which are open now.

- Lines are systemd's read_line() lines (`\n`, `\r` and NUL end one), stripped of blanks
  (space, tab, CR, LF); an empty one or one starting with `#` is skipped. The rest is split
  as sscanf("%ms %ms %ms %ms") splits it (C isspace): target, source, key file, options;
  words after the fourth are ignored. Fewer than two words: the generator logs "Failed to
  parse" and ignores the line (listed in `errors`).
- Options are the comma-separated fourth field: `noauto`/`auto` and `nofail`/`fail` (the last
  of each pair wins, as fstab_test_yes_no_option() reads them), `swap`, `tmp` (also `tmp=fs`),
  the mode `luks`, `plain`, `tcrypt`, `bitlk` (the last one given; none given: LUKS when the
  device has a LUKS header, else plain, decided when it is opened).
- A line the generator cannot make a unit of stops it (it returns the error and reads no
  further line): an entry both `tmp` and `swap`, a target named twice (the unit file exists),
  a target whose unit name would pass 255 characters. That line and every later one are left
  out of `entries` and named in `errors`; the units of earlier lines stay.
- A key file of /dev/urandom, /dev/random, /dev/hw_random or /dev/hwrng (the random devices
  the generator orders after systemd-random-seed) gives a new random key at every boot: what
  was written there cannot be read after the volume is closed. Such a volume, and a `swap` or
  `tmp` one (formatted afresh at every attach by systemd-makefs), keeps nothing across a boot,
  so it is not storage of data at rest (`storage` false).
- `open`, on the live host: a device-mapper device (/sys/block/dm-*/dm/name) named as the target
  whose dm uuid starts with `CRYPT-` (what libcryptsetup gives its mappings: CRYPT-LUKS2-,
  CRYPT-PLAIN-, CRYPT-TCRYPT-, CRYPT-BITLK-...), except CRYPT-VERITY- and CRYPT-INTEGRITY-
  (dm-verity and dm-integrity check blocks, they encrypt nothing); read without privileges.
  Under --root nothing is open in an image: `open` is null (unknown), never false.

Debian's cryptsetup scripts (cryptdisks, cryptsetup-initramfs) split the four fields the same way
(they also decode `\\0NNN` octal escapes, which the generator does not: names are kept as written)."""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, STR, ListType, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import C_SPACE, SYSTEMD_WS, at, systemd_lines
from secpolicy.facts.services import unit_name_escape

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = [
    "CRYPTTAB",
    "CRYPTTAB_ENTRY",
    "CRYPTTAB_PATH",
    "Crypttab",
    "CrypttabEntry",
    "open_crypt_devices",
    "register",
]

CRYPTTAB_PATH = "/etc/crypttab"
SYSFS = "/sys"
RANDOM_KEYS = ("/dev/urandom", "/dev/random", "/dev/hw_random", "/dev/hwrng")
MODES = ("luks", "plain", "tcrypt", "bitlk")
LONG_LINE_MAX = 1024 * 1024  # read_line(f, LONG_LINE_MAX, ...): a longer line is an error
UNIT_NAME_MAX = 255
_WORDS = re.compile(f"[^{re.escape(C_SPACE)}]+")
_NOT_CRYPT = ("CRYPT-VERITY-", "CRYPT-INTEGRITY-")
_LIVE_ONLY = "only known on the live host (device-mapper devices in /sys/block), not under --root"

CRYPTTAB_ENTRY = ObjectType(
    "crypttab_entry",
    {
        "target": STR,
        "source": STR,
        "keyfile": STR,
        "options": ListType(STR),
        "mode": STR,
        "noauto": BOOL,
        "nofail": BOOL,
        "swap": BOOL,
        "tmp": BOOL,
        "random_key": BOOL,
        "storage": BOOL,
        "open": BOOL,
    },
    doc="one /etc/crypttab entry systemd-cryptsetup-generator sets up (a line with a target and a source)",
    field_docs={
        "target": "the name of the mapping, /dev/mapper/<target>",
        "source": "the encrypted device or file (UUID=..., a /dev path) as written",
        "keyfile": "the third field as written (`none` or `-`: a passphrase asked at boot); null when absent",
        "options": "the fourth field split at commas",
        "mode": "`luks`, `plain`, `tcrypt` or `bitlk`, the last given; null when none is (LUKS if the device has a "
        "LUKS header, else plain)",
        "noauto": "not set up at boot (the last of noauto/auto wins)",
        "nofail": "boot goes on without it (the last of nofail/fail wins)",
        "swap": "formatted as swap at every attach (`swap`)",
        "tmp": "formatted afresh at every attach (`tmp` or `tmp=fs`)",
        "random_key": "the key file is a random device (/dev/urandom, /dev/random, /dev/hw_random, /dev/hwrng): a "
        "new key at every boot",
        "storage": "keeps data across a boot: not swap, not tmp, no random key",
        "open": "a device-mapper device named as the target with a CRYPT- uuid exists (live only: null under --root)",
    },
)

CRYPTTAB = ObjectType(
    "crypttab",
    {
        "exists": BOOL,
        "entries": ListType(CRYPTTAB_ENTRY),
        "storage": ListType(STR),
        "errors": ListType(STR),
        "stopped_at": STR,
    },
    doc="/etc/crypttab as systemd-cryptsetup-generator (systemd 252) reads it; open mappings from /sys (live)",
    field_docs={
        "entries": "the entries the generator makes units of, in file order",
        "storage": "the targets of the entries that are storage (see crypttab_entry.storage)",
        "errors": "lines the generator ignores or stops at, as file:line: message",
        "stopped_at": "file:line of the line that stopped the generator (later lines set nothing up), or null",
    },
)


def _matches(option: str, name: str) -> bool:
    """fstab_filter_options(): an option names `name` bare or as `name=value`."""
    return option == name or option.startswith(name + "=")


def _last_of(options: tuple[str, ...], yes: str, no: str) -> bool:
    """fstab_test_yes_no_option(): the last of `yes`/`no` decides; neither is no."""
    value = False
    for o in options:
        if _matches(o, yes):
            value = True
        elif _matches(o, no):
            value = False
    return value


def _is_random_key(keyspec: str | None) -> bool:
    if keyspec is None:
        return False
    _, colon, tail = keyspec.rpartition(":")
    # split_keyspec(): `file:device` when the part after the last colon names a device
    if colon and (tail.startswith("/") or tail.split("=", 1)[0] in ("UUID", "LABEL", "PARTUUID", "PARTLABEL")):
        return False  # a key file on a key device, read from its mount
    path = keyspec if not keyspec.startswith("//") else "/" + keyspec.lstrip("/")
    return posixpath.normpath(path) in RANDOM_KEYS  # path_equal(): `//dev//urandom/` is /dev/urandom


@dataclass(frozen=True)
class CrypttabEntry:
    target: str
    source: str
    keyfile: str | None
    options: tuple[str, ...]
    origin: str
    open: bool | None

    @property
    def mode(self) -> str | None:
        return next((o for o in reversed(self.options) if o in MODES), None)

    @property
    def noauto(self) -> bool:
        return _last_of(self.options, "noauto", "auto")

    @property
    def nofail(self) -> bool:
        return _last_of(self.options, "nofail", "fail")

    @property
    def swap(self) -> bool:
        return any(_matches(o, "swap") for o in self.options)

    @property
    def tmp(self) -> bool:
        return any(_matches(o, "tmp") for o in self.options)

    @property
    def random_key(self) -> bool:
        return _is_random_key(self.keyfile)

    @property
    def storage(self) -> bool:
        return not (self.swap or self.tmp or self.random_key)

    def describe(self) -> str:
        return f"{self.target} ({self.source})"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "open":
            if self.open is None:
                return f"{self.origin}: whether /dev/mapper/{self.target} is open is {_LIVE_ONLY}"
            if self.open:
                return f"{self.origin}: /dev/mapper/{self.target} is an open dm-crypt mapping (/sys/block)"
            return f"{self.origin}: {self.target} is not open (no dm-crypt device named {self.target} in /sys/block)"
        if name == "noauto":
            return f"{self.origin} ({'noauto: not set up at boot' if self.noauto else 'set up at boot: no noauto'})"
        if name == "storage" and not self.storage:
            return f"{self.origin} ({self.not_storage()})"
        return self.origin

    def not_storage(self) -> str:
        """Why the entry keeps nothing across a boot ("" when it does)."""
        why = [w for w, on in (("swap", self.swap), ("tmp", self.tmp), ("random key", self.random_key)) if on]
        return f"{', '.join(why)}: keeps nothing across a boot" if why else ""


def _is_crypt(uuid: str) -> bool:
    return uuid.startswith("CRYPT-") and not uuid.startswith(_NOT_CRYPT)


def open_crypt_devices(sysfs: str = SYSFS) -> dict[str, str]:
    """The dm-crypt devices (a dm uuid starting with `CRYPT-`, not a verity or integrity one),
    name -> uuid, read from `sysfs`/block/dm-*/dm/{name,uuid} (world-readable: no privileges
    needed). A device that goes away while it is read is left out."""
    block = os.path.join(sysfs, "block")
    try:
        names = os.listdir(block)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise EvaluationError(f"crypttab: cannot list {block}: {e.strerror}") from None
    found: dict[str, str] = {}
    for dev in sorted(names):
        if not dev.startswith("dm-"):
            continue
        try:
            with open(os.path.join(block, dev, "dm", "name"), encoding="utf-8", errors="surrogateescape") as f:
                name = f.read().rstrip("\n")
            with open(os.path.join(block, dev, "dm", "uuid"), encoding="utf-8", errors="surrogateescape") as f:
                uuid = f.read().rstrip("\n")
        except FileNotFoundError:
            continue  # removed meanwhile
        except OSError as e:
            raise EvaluationError(f"crypttab: cannot read {block}/{dev}/dm: {e.strerror}") from None
        if _is_crypt(uuid):
            found[name] = uuid
    return found


class Crypttab:
    """/etc/crypttab read as the generator reads it. `dm`: the open dm-crypt devices (name ->
    uuid); None reads them from `sysfs` on the live host and leaves them unknown under --root."""

    def __init__(self, ctx: FactContext, *, sysfs: str | None = None, dm: dict[str, str] | None = None) -> None:
        if dm is None and (sysfs is not None or ctx.live):
            dm = open_crypt_devices(sysfs or SYSFS)
        self._dm = dm
        text = ctx.read_text(CRYPTTAB_PATH)
        self.exists = text is not None
        self.errors: tuple[str, ...] = ()
        self.stopped_at: str | None = None
        self.entries: tuple[CrypttabEntry, ...] = ()
        self._read(text or "")

    def _read(self, text: str) -> None:
        entries: list[CrypttabEntry] = []
        errors: list[str] = []
        units: set[str] = set()
        lines = systemd_lines(text)
        for n, raw in enumerate(lines, 1):
            where = at(CRYPTTAB_PATH, n)
            stop = None
            if len(raw.encode("utf-8", "surrogateescape")) > LONG_LINE_MAX:
                stop = f"longer than {LONG_LINE_MAX} bytes: the generator cannot read it"
            else:
                line = raw.strip(SYSTEMD_WS)
                if not line or line.startswith("#"):
                    continue
                words = _WORDS.findall(line)[:4]
                if len(words) < 2:
                    errors.append(f"{where}: fewer than 2 fields (target and source): systemd-cryptsetup-generator "
                                  f"ignores the line (\"Failed to parse {CRYPTTAB_PATH}:{n}, ignoring.\")")
                    continue
                target, source = words[0], words[1]
                keyfile = words[2] if len(words) > 2 else None
                options = tuple(words[3].split(",")) if len(words) > 3 else ()
                entry = CrypttabEntry(target, source, keyfile, options, where,
                                      None if self._dm is None else target in self._dm)
                unit = f"systemd-cryptsetup@{unit_name_escape(target)}.service"
                if entry.swap and entry.tmp:
                    stop = f"{target!r} cannot be both 'tmp' and 'swap'"
                elif len(unit) > UNIT_NAME_MAX:
                    stop = f"the unit name for {target!r} is longer than {UNIT_NAME_MAX} characters"
                elif unit in units:
                    stop = f"{target!r} is named on an earlier line (its unit file exists)"
                else:
                    units.add(unit)
                    entries.append(entry)
                    continue
            rest = len(lines) - n
            later = "" if not rest else f"; line {n + 1} sets nothing up" if rest == 1 else (
                f"; lines {n + 1}-{len(lines)} set nothing up")
            errors.append(f"{where}: {stop}: systemd-cryptsetup-generator stops here{later}")
            self.stopped_at = where
            break
        self.entries = tuple(entries)
        self.errors = tuple(errors)

    @property
    def storage(self) -> tuple[str, ...]:
        return tuple(e.target for e in self.entries if e.storage)

    @classmethod
    def twin(cls, ctx: FactContext, data: Any) -> Crypttab:
        """For inline tests: /etc/crypttab from the test's files, the open dm-crypt devices
        (name -> dm uuid) from `data`, as if read on the live host."""
        if not isinstance(data, dict) or set(data) != {"dm"} or not isinstance(data["dm"], dict):
            raise EvaluationError("crypttab stand-in: a mapping dm: {name: dm uuid} of the device-mapper devices")
        dm = {str(k): str(v) for k, v in data["dm"].items()}
        return cls(ctx, dm={k: v for k, v in dm.items() if _is_crypt(v)})

    def describe(self) -> str:
        return CRYPTTAB_PATH

    def where(self, name: str, *args: Any) -> str | None:
        if name == "storage":
            parts = [f"{e.origin} {e.target}" for e in self.entries if e.storage]
            left = [f"{e.origin} {e.target} ({e.not_storage()})" for e in self.entries if not e.storage]
            shown = "; ".join(parts) if parts else f"{CRYPTTAB_PATH}: no entry that keeps data"
            if not self.exists:
                shown = f"{CRYPTTAB_PATH} (absent: no encrypted volume is set up at boot)"
            extra = "; ".join(left + list(self.errors))
            return f"{shown}; not counted: {extra}" if extra else shown
        if name in ("errors", "stopped_at", "entries"):
            return CRYPTTAB_PATH + (f" ({'; '.join(self.errors)})" if self.errors else "")
        return CRYPTTAB_PATH


def register(reg: FactRegistry) -> None:
    reg.register(
        "crypttab",
        Crypttab,
        returns=CRYPTTAB,
        doc="the encrypted volumes /etc/crypttab sets up at boot, and which are open (live)",
        twin=Crypttab.twin,
    )
