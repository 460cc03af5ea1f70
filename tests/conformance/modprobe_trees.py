"""Trees of modprobe.d files and a module directory for asking kmod's own `modprobe`: named
cases and random files of hostile lines (globs, brackets, dashes and underscores, tabs,
carriage returns, continued lines, NULs, first-wins installs) across every modprobe.d
directory, hidden and backup files and files without the .conf suffix among them."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

KERNEL = "6.1.0-test"
MODULES = ["cramfs", "udf", "usb-storage", "squashfs", "dccp", "sctp", "tipc", "rds", "hfs", "hfsplus"]
DIRS = ["etc/modprobe.d", "run/modprobe.d", "usr/local/lib/modprobe.d", "usr/lib/modprobe.d", "lib/modprobe.d"]

CASES: dict[str, list[tuple[str, str]]] = {
    "exact": [("etc/modprobe.d/cis.conf", "install cramfs /bin/false\nblacklist cramfs\n")],
    "a glob install": [("etc/modprobe.d/cis.conf", "install cram* /bin/false\ninstall [s-u]dp /bin/true\n")],
    "the first install wins": [("etc/modprobe.d/a.conf", "install udf /bin/true\n"),
                               ("etc/modprobe.d/b.conf", "install udf /bin/false\n")],
    "an earlier glob wins": [("etc/modprobe.d/a.conf", "install * /sbin/modprobe --ignore-install $CMDLINE_OPTS\n"),
                             ("etc/modprobe.d/b.conf", "install cramfs /bin/false\n")],
    "dashes and underscores": [("etc/modprobe.d/a.conf", "install usb_storage /bin/false\nblacklist usb-storage\n")],
    "a dash inside brackets stays": [("etc/modprobe.d/a.conf", "install usb[-_]storage /bin/false\n")],
    "an unclosed bracket": [("etc/modprobe.d/a.conf", "install [cramfs /bin/false\nblacklist cramfs]\n")],
    "/usr/lib/modprobe.d is not read": [("usr/lib/modprobe.d/cis.conf", "install cramfs /bin/false\nblacklist cramfs\n")],
    "/lib/modprobe.d is read": [("lib/modprobe.d/cis.conf", "install cramfs /bin/false\nblacklist cramfs\n")],
    "/etc hides the same name in /lib": [("lib/modprobe.d/cis.conf", "install cramfs /bin/false\n"),
                                         ("etc/modprobe.d/cis.conf", "# local\n")],
    "hidden and suffix-less files": [("etc/modprobe.d/.cis.conf", "install cramfs /bin/false\n"),
                                     ("etc/modprobe.d/cis", "blacklist cramfs\n")],
    "a continued line": [("etc/modprobe.d/a.conf", "install cramfs \\\n/bin/false\nblack\\\nlist udf\n")],
    "carriage returns": [("etc/modprobe.d/a.conf", "blacklist cramfs\r\ninstall udf /bin/false\r\n")],
    "a NUL ends the line": [("etc/modprobe.d/a.conf", "install cramfs /bin/false\0 x\nblacklist udf\0\n")],
}

_LINES = [
    "install {m} /bin/false", "install {m} /bin/true", "blacklist {m}", "install {g} /bin/false", "blacklist {g}",
    "install {m}\t/bin/false", "  install {m} /bin/false  ", "install {m} /bin/false --x", "install {m}",
    "install {u} /bin/false", "blacklist {u}", "# install {m} /bin/false", "install {m} \\\n/bin/false",
    "install {m} /sbin/modprobe --ignore-install {m}", "remove {m} /bin/true", "options {m} x=1",
    "install\t{m}\t/usr/bin/false", "blacklist {m} extra", "install {m} /bin/false\0 garbage", "INSTALL {m} /bin/false",
    "install {m}/bin/false", "install {m} /bin/false\r", "blacklist {m}\r", "install {m}  /bin/false",
    "install {m} /bin/echo hi", "install [a-z]{m} /bin/false", "install {m}] /bin/false", "install [{m} /bin/false",
    "install [c-u]{rest} /bin/false", "install {head}-[a-z]* /bin/false", "install {head}_[a-z]* /bin/false",
    "blacklist [a-z]{rest}", "install *{tail} /bin/false", "install {m}\\\\ /bin/false", "install \\\\{m} /bin/false",
]


def modules(root: Path, kmod: str) -> None:
    """MODULES as .ko files (ELF objects holding just their .modinfo) indexed by kmod's depmod
    (`kmod` is its binary), which `modprobe -d ROOT -S KERNEL` looks them up in."""
    for m in MODULES:
        d = root / f"lib/modules/{KERNEL}/kernel/x/{m}"
        d.mkdir(parents=True, exist_ok=True)
        info = d / "modinfo.bin"
        info.write_bytes(f"name={m.replace('-', '_')}\0license=GPL\0vermagic={KERNEL} SMP mod_unload \0".encode())
        subprocess.run(["objcopy", "-I", "binary", "-O", "elf64-x86-64", "-B", "i386:x86-64", "--rename-section",
                        ".data=.modinfo,alloc,load,readonly,data,contents", info.name, f"{m}.ko"], cwd=d, check=True)
        info.unlink()
    subprocess.run(["depmod", "-b", str(root), KERNEL], executable=kmod, check=True, capture_output=True)


def _file(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(1, 4)):
        m = rng.choice(MODULES)
        glob = rng.choice([m[:3] + "*", m[:-1] + "?", "*", "[c-u]" + m[1:], m.replace("-", "_"), m.replace("_", "-")])
        lines.append(rng.choice(_LINES).format(m=m, g=glob, u=m.replace("-", "_"), rest=m[1:], head=m.split("-")[0],
                                               tail=m[-3:]))
    return ("\n".join(lines) + rng.choice(["\n", "", "\n\n"])).encode()


def random_files(root: Path, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(rng.randint(1, 4)):
        d = root / rng.choice(DIRS)
        d.mkdir(parents=True, exist_ok=True)
        name = rng.choice(["a.conf", "b.conf", "z.conf", ".h.conf", "c.conf~", "noext", "a.conf"])
        (d / name).write_bytes(_file(rng))
