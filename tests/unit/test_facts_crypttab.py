"""crypttab: /etc/crypttab read as systemd-cryptsetup-generator (systemd 252) reads it, compared
with the generator itself; open dm-crypt mappings read from a sysfs tree; and the HIPAA
storage-encryption rule over both."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from facts_helpers import context, write

from secpolicy.engine import evaluate_rule
from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.facts.crypttab import Crypttab, open_crypt_devices
from secpolicy.facts.services import unit_name_escape
from secpolicy.vocabulary import builtin_registry, load_policies

REPO = Path(__file__).resolve().parents[2]
RULE = "hipaa-164.312-a-2-iv-storage-encryption"
GENERATOR = Path("/usr/lib/systemd/system-generators/systemd-cryptsetup-generator")

MIXED = (
    "# <target> <source> <key> <options>\n"
    "   \n"
    "onlyone\n"
    "data_crypt UUID=5c1e-9b2a none luks,discard\n"
    "cryptswap /dev/vda3 /dev/urandom swap,cipher=aes-xts-plain64\n"
    "backup /dev/vdc /etc/keys/b.key luks,noauto\n"
    "later /dev/vdd - auto,noauto,auto,nofail\n"
    "scratch /dev/vde //dev//urandom/ plain,tmp=ext4\n"
    "five /dev/vdf none luks,noauto extra words\n"
    "cr\rtab\t/dev/vdg\v-\n"
    "\v# /dev/vdh\n"
    "usb_crypt /dev/vdi key.bin:/dev/disk/by-label/KEYS\n"
)

# each: the crypttab text and the targets the generator makes units of before it stops
STOPS = {
    "tmp and swap": ("a /dev/x\nbad /dev/y none tmp,swap\nc /dev/z\n", ["a"]),
    "a target twice": ("d /dev/x\nd /dev/y\ne /dev/z\n", ["d"]),
    "a unit name over 255 characters": (f"{'x' * 229} /dev/x\ngood /dev/y\n", []),
    "the longest unit name": (f"{'x' * 228} /dev/x\ngood /dev/y\n", ["x" * 228, "good"]),
}


def _crypttab(tmp_path: Path, text: str, **kw) -> Crypttab:
    write(tmp_path, "/etc/crypttab", text)
    return Crypttab(context(tmp_path), **kw)


def _sysfs(base: Path, devices: dict[str, tuple[str, str]]) -> Path:
    """A sysfs tree as the kernel lays it out: /sys/block/dm-N links into devices/virtual/block."""
    (base / "block").mkdir(parents=True)
    for dev, (name, uuid) in devices.items():
        real = base / "devices/virtual/block" / dev / "dm"
        real.mkdir(parents=True)
        (real / "name").write_text(name + "\n")
        (real / "uuid").write_text(uuid + ("\n" if uuid else ""))
        os.symlink(f"../devices/virtual/block/{dev}", base / "block" / dev)
    os.symlink("../devices/virtual/block/vda", base / "block/vda")  # not device-mapper
    return base


def test_entries_fields_and_options_as_the_generator_reads_them(tmp_path: Path) -> None:
    c = _crypttab(tmp_path, MIXED)
    got = [(e.target, e.source, e.keyfile, e.options, e.where("target")) for e in c.entries]
    assert got == [
        ("data_crypt", "UUID=5c1e-9b2a", "none", ("luks", "discard"), "/etc/crypttab:4"),
        ("cryptswap", "/dev/vda3", "/dev/urandom", ("swap", "cipher=aes-xts-plain64"), "/etc/crypttab:5"),
        ("backup", "/dev/vdc", "/etc/keys/b.key", ("luks", "noauto"), "/etc/crypttab:6"),
        ("later", "/dev/vdd", "-", ("auto", "noauto", "auto", "nofail"), "/etc/crypttab:7"),
        ("scratch", "/dev/vde", "//dev//urandom/", ("plain", "tmp=ext4"), "/etc/crypttab:8"),
        ("five", "/dev/vdf", "none", ("luks", "noauto"), "/etc/crypttab:9"),
        ("tab", "/dev/vdg", "-", (), "/etc/crypttab:11"),  # \r ended line 10 ("cr": one field)
        ("#", "/dev/vdh", None, (), "/etc/crypttab:12"),  # \v is no blank strstrip() removes
        ("usb_crypt", "/dev/vdi", "key.bin:/dev/disk/by-label/KEYS", (), "/etc/crypttab:13"),
    ]
    flags = {e.target: (e.mode, e.noauto, e.nofail, e.swap, e.tmp, e.random_key, e.storage) for e in c.entries}
    assert flags == {
        "data_crypt": ("luks", False, False, False, False, False, True),
        "cryptswap": (None, False, False, True, False, True, False),
        "backup": ("luks", True, False, False, False, False, True),
        "later": (None, False, True, False, False, False, True),
        "scratch": ("plain", False, False, False, True, True, False),
        "five": ("luks", True, False, False, False, False, True),
        "tab": (None, False, False, False, False, False, True),
        "#": (None, False, False, False, False, False, True),
        "usb_crypt": (None, False, False, False, False, False, True),
    }
    assert c.errors == tuple(
        f"/etc/crypttab:{n}: fewer than 2 fields (target and source): systemd-cryptsetup-generator ignores the "
        f'line ("Failed to parse /etc/crypttab:{n}, ignoring.")'
        for n in (3, 10)
    )
    assert (c.exists, c.stopped_at) == (True, None)
    assert c.storage == ("data_crypt", "backup", "later", "five", "tab", "#", "usb_crypt")
    assert c.entries[1].where("storage") == "/etc/crypttab:5 (swap, random key: keeps nothing across a boot)"


def test_an_absent_file_sets_nothing_up(tmp_path: Path) -> None:
    c = Crypttab(context(tmp_path))
    assert (c.exists, c.entries, c.storage, c.errors) == (False, (), (), ())
    assert c.where("storage") == "/etc/crypttab (absent: no encrypted volume is set up at boot)"


@pytest.mark.parametrize("case", sorted(STOPS))
def test_a_line_the_generator_cannot_make_a_unit_of_stops_it(tmp_path: Path, case: str) -> None:
    text, targets = STOPS[case]
    c = _crypttab(tmp_path, text)
    assert [e.target for e in c.entries] == targets
    if len(targets) == text.count("\n"):
        assert (c.stopped_at, c.errors) == (None, ())
    else:
        assert c.stopped_at == f"/etc/crypttab:{len(targets) + 1}"
        assert c.errors[-1].endswith(f"systemd-cryptsetup-generator stops here; line {len(targets) + 2} sets nothing up")


def test_unit_name_escape_is_systemds() -> None:
    assert unit_name_escape("a-b.c") == "a\\x2db.c"
    assert unit_name_escape(".x/y z") == "\\x2ex-y\\x20z"


# --- the generator itself ------------------------------------------------------------------
def _generate(tmp_path: Path, text: str) -> tuple[Path, str]:
    if not GENERATOR.exists():
        pytest.skip("systemd-cryptsetup-generator (Debian's systemd package) is not installed")
    tab = write(tmp_path, "in/crypttab", text)
    out = tmp_path / "out"
    for d in ("out", "out.early", "out.late", "run"):
        (tmp_path / d).mkdir()
    done = subprocess.run(
        [str(GENERATOR), str(out), f"{out}.early", f"{out}.late"], capture_output=True, text=True, timeout=60,
        check=False, env={"SYSTEMD_CRYPTTAB": str(tab), "RUNTIME_DIRECTORY": str(tmp_path / "run"),
                          "SYSTEMD_PROC_CMDLINE": "", "SYSTEMD_LOG_TARGET": "console",
                          "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return out, done.stderr


@pytest.mark.parametrize("case", ["mixed", *sorted(STOPS)])
def test_entries_are_the_units_the_generator_makes(tmp_path: Path, case: str) -> None:
    text = MIXED if case == "mixed" else STOPS[case][0]
    out, log = _generate(tmp_path, text)
    ours = _crypttab(tmp_path / "root", text)
    unit = {f"systemd-cryptsetup@{unit_name_escape(e.target)}.service": e for e in ours.entries}
    assert {p.name for p in out.glob("systemd-cryptsetup@*.service")} == set(unit)
    for name, e in unit.items():
        service = (out / name).read_text()
        assert (out / f"cryptsetup.target.requires/{name}").exists() == (not e.noauto and not e.nofail), name
        assert (out / f"cryptsetup.target.wants/{name}").exists() == (not e.noauto and e.nofail), name
        assert ("systemd-makefs swap" in service) == e.swap, name
        assert ("After=systemd-random-seed.service" in service) == e.random_key, name
    ignored = {line.split(":")[-1].split(",")[0] for line in log.splitlines() if line.startswith("Failed to parse")}
    assert ignored == {err.split(":")[1] for err in ours.errors if "ignores the line" in err}


# --- open mappings -------------------------------------------------------------------------
def test_open_is_a_dm_crypt_device_of_the_targets_name(tmp_path: Path) -> None:
    sysfs = _sysfs(tmp_path / "sys", {
        "dm-0": ("data_crypt", "CRYPT-LUKS2-5c1e9b2a5c1e9b2a5c1e9b2a5c1e9b2a-data_crypt"),
        "dm-1": ("backup", "LVM-Qx3f9aVg0Xr1"),  # same name, not dm-crypt
        "dm-2": ("cryptswap", "CRYPT-PLAIN-cryptswap"),
        "dm-3": ("later", ""),  # a device-mapper device without a uuid
        "dm-4": ("five", "CRYPT-VERITY-959135d6b3894b3b8125503de238d5c4-five"),  # checks blocks, encrypts nothing
        "dm-5": ("tab", "CRYPT-INTEGRITY-tab"),
    })
    assert open_crypt_devices(str(sysfs)) == {
        "data_crypt": "CRYPT-LUKS2-5c1e9b2a5c1e9b2a5c1e9b2a5c1e9b2a-data_crypt",
        "cryptswap": "CRYPT-PLAIN-cryptswap",
    }
    c = _crypttab(tmp_path / "root", MIXED, sysfs=str(sysfs))
    assert {e.target: e.open for e in c.entries} == {
        "data_crypt": True, "cryptswap": True, "backup": False, "later": False, "scratch": False, "five": False,
        "tab": False, "#": False, "usb_crypt": False,
    }
    assert c.entries[2].where("open") == "/etc/crypttab:6: backup is not open (no dm-crypt device named backup in /sys/block)"
    assert c.entries[0].where("open") == "/etc/crypttab:4: /dev/mapper/data_crypt is an open dm-crypt mapping (/sys/block)"


def test_under_a_root_the_open_state_is_unknown_not_false(tmp_path: Path) -> None:
    c = _crypttab(tmp_path, MIXED)
    assert {e.open for e in c.entries} == {None}
    assert c.entries[0].where("open") == (
        "/etc/crypttab:4: whether /dev/mapper/data_crypt is open is only known on the live host "
        "(device-mapper devices in /sys/block), not under --root"
    )


def test_a_sysfs_without_block_has_no_device(tmp_path: Path) -> None:
    assert open_crypt_devices(str(tmp_path)) == {}


@pytest.mark.parametrize("data", [None, {"open": ["a"]}, {"dm": ["a"]}, {"dm": {}, "x": 1}])
def test_the_inline_test_stand_in_is_checked(tmp_path: Path, data) -> None:
    with pytest.raises(EvaluationError, match="crypttab stand-in"):
        Crypttab.twin(context(tmp_path), data)


# --- the HIPAA rule ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hipaa():
    reg = builtin_registry()
    (rule,) = [r for p in load_policies([REPO / "policies/hipaa"], reg).policies for r in p.rules if r.id == RULE]
    return rule, reg


def _judge(hipaa, root: Path, text: str, dm: dict[str, str] | None = None):
    rule, reg = hipaa
    write(root, "/etc/crypttab", text)
    ctx = FactContext(reg, str(root), preset=None if dm is None else {"crypttab": {"dm": dm}})
    return evaluate_rule(rule, ctx)


def test_rule_under_a_root_judges_the_configuration_and_says_open_is_unseen(tmp_path: Path, hipaa) -> None:
    f = _judge(hipaa, tmp_path, "data_crypt UUID=5c1e-9b2a none luks\ncryptswap /dev/vda3 /dev/urandom swap\n")
    assert f.status.value == "pass"
    assert [(e.expression, e.observed, e.source) for e in f.evidence] == [
        ("crypttab.storage != []", '["data_crypt"]',
         ("/etc/crypttab:1 data_crypt; not counted: /etc/crypttab:2 cryptswap (swap, random key: keeps nothing "
          "across a boot)")),
        ("e.open exists", "absent", ("/etc/crypttab:1: whether /dev/mapper/data_crypt is open is only known on "
                                     "the live host (device-mapper devices in /sys/block), not under --root")),
        ("e.storage", "false", "/etc/crypttab:2 (swap, random key: keeps nothing across a boot)"),
    ]


@pytest.mark.parametrize(("text", "status"), [
    ("data_crypt\n", "fail"),  # one field: systemd ignores the line
    ("cryptswap /dev/vda3 /dev/urandom swap\n", "fail"),
    ("scratch /dev/vdb /dev/random plain\n", "fail"),
    ("t /dev/vdb none tmp\n", "fail"),
    ("backup /dev/vdc /etc/keys/b.key luks,noauto\n", "pass"),
    ("data_crypt UUID=5c1e-9b2a none luks\n", "pass"),
])
def test_rule_counts_only_volumes_that_keep_data(tmp_path: Path, hipaa, text: str, status: str) -> None:
    assert _judge(hipaa, tmp_path, text).status.value == status


def test_rule_live_names_every_volume_not_open(tmp_path: Path, hipaa) -> None:
    text = ("data_crypt UUID=5c1e-9b2a none luks\nhome_crypt UUID=77ab-01cd none luks\n"
            "backup /dev/vdc none luks,noauto\nok_crypt /dev/vdd none luks\n")
    f = _judge(hipaa, tmp_path, text, {"ok_crypt": "CRYPT-LUKS2-77ab01cd-ok_crypt", "data_crypt": "LVM-x"})
    assert f.status.value == "fail"
    assert [e.source for e in f.evidence if e.expression == "e.noauto"] == [
        "/etc/crypttab:1 (set up at boot: no noauto)", "/etc/crypttab:2 (set up at boot: no noauto)"]
    assert [e.source for e in f.evidence if e.expression == "e.open"] == [
        "/etc/crypttab:1: data_crypt is not open (no dm-crypt device named data_crypt in /sys/block)",
        "/etc/crypttab:2: home_crypt is not open (no dm-crypt device named home_crypt in /sys/block)",
    ]
    opened = _judge(hipaa, tmp_path, text, {n: f"CRYPT-LUKS2-0-{n}" for n in ("data_crypt", "home_crypt", "ok_crypt")})
    assert opened.status.value == "pass"
