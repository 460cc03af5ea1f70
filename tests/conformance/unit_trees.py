"""Trees of systemd unit files and symlinks for asking `systemctl --root=TREE is-enabled`: named
cases (each a way a unit gets enabled, aliased, linked or masked) and random trees mixing unit
files, drop-ins, aliases, masks, linked files and .wants/.requires/.upholds links across every
directory of the unit search path."""

from __future__ import annotations

import os
import random
from pathlib import Path

V = "usr/lib/systemd/system"
LIB = "lib/systemd/system"
E = "etc/systemd/system"
R = "run/systemd/system"

INSTALL = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
STATIC = "[Service]\nExecStart=/bin/true\n"
ALSO = "[Service]\nExecStart=/bin/true\n[Install]\nAlso=foo.service\n"
ALIAS = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nAlias=foo-alias.service\n"
DEFAULT_INSTANCE = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nDefaultInstance=tty1\n"

Entry = tuple[str, str, str]  # ("file" | "link" | "dir", path in the tree, content or link target)


def f(path: str, text: str) -> Entry:
    return ("file", path, text)


def ln(path: str, target: str) -> Entry:
    return ("link", path, target)


def vendor_link(path: str, unit: str) -> Entry:
    return ln(path, f"/usr/lib/systemd/system/{unit}")


# name -> (entries, the names asked)
CASES: dict[str, tuple[list[Entry], list[str]]] = {
    "enabled": ([f(f"{V}/foo.service", INSTALL), vendor_link(f"{E}/multi-user.target.wants/foo.service", "foo.service")],
                ["foo"]),
    "enabled for this boot": ([f(f"{V}/foo.service", INSTALL),
                               vendor_link(f"{R}/multi-user.target.wants/foo.service", "foo.service")], ["foo"]),
    "wanted by a vendor link": ([f(f"{V}/foo.service", INSTALL), ln(f"{V}/multi-user.target.wants/foo.service",
                                                                    "../foo.service")], ["foo"]),
    "a static unit linked in /etc": ([f(f"{V}/foo.service", STATIC),
                                      vendor_link(f"{E}/multi-user.target.wants/foo.service", "foo.service")], ["foo"]),
    "required": ([f(f"{V}/foo.service", INSTALL), vendor_link(f"{E}/x.target.requires/foo.service", "foo.service")],
                 ["foo"]),
    "upheld (not read by 252)": ([f(f"{V}/foo.service", INSTALL),
                                  vendor_link(f"{E}/x.target.upholds/foo.service", "foo.service")], ["foo"]),
    "a .wants link named otherwise": ([f(f"{V}/foo.service", INSTALL), f(f"{V}/bar.service", INSTALL),
                                       vendor_link(f"{E}/multi-user.target.wants/bar.service", "foo.service")],
                                      ["foo", "bar"]),
    "a dangling .wants link": ([f(f"{V}/foo.service", INSTALL),
                                ln(f"{E}/multi-user.target.wants/foo.service", "/nowhere/foo.service")], ["foo"]),
    "a plain file in .wants": ([f(f"{V}/foo.service", INSTALL), f(f"{E}/multi-user.target.wants/foo.service",
                                                                  INSTALL)], ["foo"]),
    "a .wants link without a unit suffix": ([f(f"{V}/foo.service", INSTALL),
                                             vendor_link(f"{E}/multi-user.target.wants/foo", "foo.service")], ["foo"]),
    "a .wants directory one level down": ([f(f"{V}/foo.service", INSTALL),
                                           vendor_link(f"{E}/sub/multi-user.target.wants/foo.service", "foo.service")],
                                          ["foo"]),
    "a hidden .wants directory": ([f(f"{V}/foo.service", INSTALL),
                                   vendor_link(f"{E}/.multi-user.target.wants/foo.service", "foo.service")], ["foo"]),
    "Also= only": ([f(f"{V}/foo.service", INSTALL), f(f"{V}/bar.service", ALSO)], ["bar"]),
    "an alias link enables": ([f(f"{V}/foo.service", ALIAS), vendor_link(f"{E}/foo-alias.service", "foo.service")],
                              ["foo", "foo-alias"]),
    "a vendor alias": ([f(f"{V}/foo.service", INSTALL), ln(f"{V}/foo-alias.service", "foo.service")],
                       ["foo", "foo-alias"]),
    "masked": ([f(f"{V}/foo.service", INSTALL), ln(f"{E}/foo.service", "/dev/null")], ["foo"]),
    "masked for this boot": ([f(f"{V}/foo.service", INSTALL), ln(f"{R}/foo.service", "/dev/null")], ["foo"]),
    "masked and enabled": ([f(f"{V}/foo.service", INSTALL), ln(f"{E}/foo.service", "/dev/null"),
                            vendor_link(f"{E}/multi-user.target.wants/foo.service", "foo.service")], ["foo"]),
    "an empty unit file masks": ([f(f"{V}/foo.service", INSTALL), f(f"{E}/foo.service", "")], ["foo"]),
    "linked": ([f("opt/foo.service", INSTALL), ln(f"{E}/foo.service", "/opt/foo.service")], ["foo"]),
    "linked and enabled": ([f("opt/foo.service", INSTALL), ln(f"{E}/foo.service", "/opt/foo.service"),
                            ln(f"{E}/multi-user.target.wants/foo.service", "/opt/foo.service")], ["foo"]),
    "an instance": ([f(f"{V}/getty@.service", INSTALL),
                     vendor_link(f"{E}/multi-user.target.wants/getty@tty1.service", "getty@.service")],
                    ["getty@tty1", "getty@tty2", "getty@"]),
    "an instance wanted by a vendor link": ([f(f"{V}/getty@.service", INSTALL),
                                             ln(f"{V}/multi-user.target.wants/getty@tty1.service", "../getty@.service")],
                                            ["getty@tty1", "getty@"]),
    "DefaultInstance=": ([f(f"{V}/getty@.service", DEFAULT_INSTANCE),
                          vendor_link(f"{E}/multi-user.target.wants/getty@tty1.service", "getty@.service")],
                         ["getty@tty1", "getty@"]),
    "/lib before /usr/lib": ([f(f"{V}/foo.service", INSTALL), f(f"{LIB}/foo.service", STATIC)], ["foo"]),
    "[Install] in a drop-in": ([f(f"{V}/foo.service", STATIC), f(f"{E}/foo.service.d/i.conf", INSTALL)], ["foo"]),
    "a hidden drop-in": ([f(f"{V}/foo.service", STATIC), f(f"{E}/foo.service.d/.i.conf", INSTALL)], ["foo"]),
    "an empty WantedBy=": ([f(f"{V}/foo.service", INSTALL + "WantedBy=\n")], ["foo"]),
    "a socket": ([f(f"{V}/foo.service", STATIC), f(f"{V}/foo.socket", "[Socket]\nListenStream=1\n[Install]\n"
                                                                      "WantedBy=sockets.target\n"),
                  vendor_link(f"{E}/sockets.target.wants/foo.socket", "foo.socket")], ["foo", "foo.socket"]),
    "generated": ([f("run/systemd/generator/foo.service", STATIC)], ["foo"]),
    "transient": ([f("run/systemd/transient/foo.service", STATIC)], ["foo"]),
    "a directory named like a unit": ([("dir", f"{E}/foo.service", "")], ["foo"]),
    "a dangling unit link": ([ln(f"{E}/foo.service", "/nowhere/foo.service"), f(f"{V}/foo.service", INSTALL)],
                             ["foo"]),
    "an alias of a missing unit": ([ln(f"{E}/foo.service", "/usr/lib/systemd/system/gone.service")], ["foo"]),
    "an alias to another unit type": ([f(f"{V}/foo.socket", "[Socket]\nListenStream=1\n"),
                                       vendor_link(f"{E}/foo.service", "foo.socket")], ["foo"]),
    "a same-name link into the search path": ([f(f"{V}/foo.service", INSTALL),
                                               vendor_link(f"{E}/foo.service", "foo.service")], ["foo"]),
    "a symlink loop": ([ln(f"{V}/foo.service", "bar.service"), ln(f"{V}/bar.service", "foo.service")], ["foo"]),
    "an alias to an empty file in /run": ([f("run/systemd/generator/bar.service", ""),
                                           ln(f"{E}/foo.service", "/run/systemd/generator/bar.service")], ["foo"]),
    "a service refused before the generators are looked at": (
        [f("run/systemd/generator/foo.service", STATIC), ln(f"{V}/foo.service", "/etc/systemd/system/t@.service")],
        ["foo"]),
    "a socket over a refused vendor alias": (
        [f("run/systemd/generator/foo.socket", "[Socket]\nListenStream=1\n"),
         ln(f"{V}/foo.socket", "/etc/systemd/system/t@.service")], ["foo.socket"]),
}

DIRS = ["etc/systemd/system", "run/systemd/system", "usr/lib/systemd/system", "lib/systemd/system",
        "usr/local/lib/systemd/system", "run/systemd/generator", "run/systemd/generator.late",
        "run/systemd/transient", "etc/systemd/system.control", "etc/systemd/system.attached"]
NAMES = ["a.service", "b.service", "c.service", "t@.service", "t@x.service", "t@y.service", "a.socket"]
ASKED = [*NAMES, "al.service", "t@z.service"]
_WANTS = ["multi-user.target.wants", "sockets.target.wants", "x.target.requires", "x.target.upholds", "y.wants"]


def build(root: Path, entries: list[Entry]) -> None:
    for kind, rel, x in entries:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            p.write_text(x)
        elif kind == "dir":
            p.mkdir()
        else:
            os.symlink(x, p)


def _unit_text(rng: random.Random, name: str) -> str:
    service = name.endswith(".service")
    lines = ["[Unit]", "Description=x", "[Service]" if service else "[Socket]",
             "ExecStart=/bin/true" if service else "ListenStream=1"]
    if rng.random() < 0.7:
        lines.append("[Install]")
        for _ in range(rng.randint(0, 3)):
            key = rng.choice(["WantedBy", "WantedBy", "RequiredBy", "Alias", "Also", "DefaultInstance", "UpheldBy"])
            value = {"WantedBy": "multi-user.target", "RequiredBy": "x.target", "UpheldBy": "x.target",
                     "Alias": rng.choice(["al.service", "b.service", "t@z.service", "al.socket"]),
                     "Also": rng.choice(["b.service", "c.service"]), "DefaultInstance": rng.choice(["x", "y"])}[key]
            lines.append(f"{key}={'' if rng.random() < 0.1 else value}")
    return "\n".join(lines) + "\n"


def _free(p: Path) -> bool:
    return not p.exists() and not p.is_symlink()


def random_tree(root: Path, seed: int) -> None:
    """A tree of unit files and links drawn from `seed` (the same tree for the same seed)."""
    rng = random.Random(seed)
    for _ in range(rng.randint(2, 8)):
        d = root / rng.choice(DIRS)
        name = rng.choice([*NAMES, "al.service"])
        roll = rng.random()
        if roll < 0.5:  # a symlink: an alias, a mask, a linked file or an enablement link
            p = d / rng.choice(_WANTS) / name if rng.random() < 0.7 else d / name
            target_name = name if rng.random() < 0.7 else rng.choice(NAMES)
            if target_name.startswith("t@") and rng.random() < 0.5:
                target_name = "t@.service"
            target_dir = rng.choice([*DIRS, "opt"])
            target = rng.choice([f"/{target_dir}/{target_name}", "/dev/null", f"../{target_name}", target_name])
            p.parent.mkdir(parents=True, exist_ok=True)
            if _free(p):
                os.symlink(target, p)
        elif roll < 0.95:  # a unit file (one in ten empty: a mask)
            p = d / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if _free(p):
                p.write_text(_unit_text(rng, name) if rng.random() < 0.9 else "")
        else:  # a unit file outside the search path, linked in
            (root / "opt").mkdir(exist_ok=True)
            (root / "opt" / name).write_text(_unit_text(rng, name))
            d.mkdir(parents=True, exist_ok=True)
            if _free(d / name):
                os.symlink(f"/opt/{name}", d / name)
    for _ in range(rng.randint(0, 2)):
        _oddity(root, rng)
    for name in rng.sample(NAMES, 3):  # some vendor units
        p = root / "usr/lib/systemd/system" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if _free(p):
            p.write_text(_unit_text(rng, name))


def _oddity(root: Path, rng: random.Random) -> None:
    """Drop-ins (hidden, backup, empty, clearing), directories named like units, hidden and
    symlinked .wants directories, instance links, self-links."""
    d = root / rng.choice(DIRS)
    name = rng.choice(NAMES)
    d.mkdir(parents=True, exist_ok=True)
    roll = rng.random()
    if roll < 0.3:
        dropins = d / f"{name}.d"
        dropins.mkdir(exist_ok=True)
        (dropins / rng.choice(["a.conf", "b.conf", ".h.conf", "x.conf~"])).write_text(rng.choice(
            ["[Install]\nWantedBy=multi-user.target\n", "[Install]\nAlias=al.service\n", "",
             "[Install]\nWantedBy=\n", "[Install]\nAlso=c.service\n"]))
    elif roll < 0.45:
        if _free(d / name):
            (d / name).mkdir()
    elif roll < 0.6:
        wants = d / rng.choice([".hidden.wants", "multi-user.target.wants~", "z.wants", "q.requires"])
        wants.mkdir(exist_ok=True)
        if _free(wants / name):
            os.symlink(f"/usr/lib/systemd/system/{name}", wants / name)
    elif roll < 0.75:
        (root / "opt/w").mkdir(parents=True, exist_ok=True)
        if _free(root / "opt/w" / name):
            os.symlink(f"/usr/lib/systemd/system/{name}", root / "opt/w" / name)
        if _free(d / "l.target.wants"):
            os.symlink("/opt/w", d / "l.target.wants")
    elif roll < 0.9:
        wants = d / "multi-user.target.wants"
        wants.mkdir(exist_ok=True)
        instance = rng.choice(["t@x.service", "t@y.service", "t@z.service", "t@.service"])
        if _free(wants / instance):
            os.symlink("/usr/lib/systemd/system/t@.service", wants / instance)
    elif _free(d / name):
        os.symlink(name, d / name)
