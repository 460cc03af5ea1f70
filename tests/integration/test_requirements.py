"""Per-requirement results: each framework requirement the packs declare or the scanned rules
reference gets one status rolled up from its rules (any fail fails it), its coverage class
beside it, and compliance percentages that leave not-applicable requirements out."""

from __future__ import annotations

from pathlib import Path

import jsonschema

from secpolicy.engine import scan
from secpolicy.policy.waivers import load_waivers
from secpolicy.resources import load_schema
from secpolicy.ruletests import materialize_files
from secpolicy.vocabulary import builtin_registry, load_policies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "verdicts"
DPKG_STATUS = (FIXTURES / "sshd-installed" / "var" / "lib" / "dpkg" / "status").read_text()
WEAK = "MaxAuthTries 6\nPermitRootLogin yes\nCiphers aes128-ctr\n"
HARDENED = "MaxAuthTries 4\nPermitRootLogin no\nCiphers aes128-gcm@openssh.com\n"


def results(tmp_path: Path, sshd_config: str, *, installed: bool = True, **kw) -> dict:
    root = tmp_path / "root"
    files = {"/etc/ssh/sshd_config": sshd_config}
    if installed:
        files["/var/lib/dpkg/status"] = DPKG_STATUS
    materialize_files(str(root), files)
    reg = builtin_registry()
    res = scan(load_policies([FIXTURES], reg), reg, root=str(root), **kw).to_results()
    jsonschema.validate(res, load_schema("results"))
    return res


def table(res: dict, fw: str) -> list[tuple]:
    return [(r["id"], r["status"], r["coverage"], r["rule_ids"]) for r in res["requirements"][fw]]


def test_a_requirement_fails_when_any_of_its_rules_fails(tmp_path):
    res = results(tmp_path, WEAK)
    assert table(res, "pci-dss") == [
        ("8.2.2", "fail", "partial", ["v-ssh-root-login"]),
        ("8.2.8", "not_assessed", "manual", []),
        ("8.3.4", "fail", "automated", ["v-ssh-ciphers", "v-ssh-max-auth-tries"]),
    ]
    (req,) = [r for r in res["requirements"]["pci-dss"] if r["id"] == "8.3.4"]
    assert (req["rules"]["fail"], req["rules"]["pass"]) == (2, 0)
    assert table(res, "cis") == [
        ("5.1.6", "fail", "partial", ["v-ssh-ciphers"]),
        ("5.1.7", "not_assessed", "manual", []),  # its only rule is disabled
        ("5.1.16", "fail", "automated", ["v-ssh-max-auth-tries"]),
        ("5.1.20", "fail", "automated", ["v-ssh-root-login"]),
        ("5.1.22", "not_assessed", "manual", []),
    ]
    (note,) = [r["note"] for r in res["requirements"]["cis"] if r["id"] == "5.1.22"]
    assert note == "site policy decides which MACs are approved"


def test_passing_rules_pass_the_requirement_and_percentages_leave_out_what_was_not_decided(tmp_path):
    res = results(tmp_path, HARDENED)
    assert [(r["id"], r["status"]) for r in res["requirements"]["pci-dss"]] == [
        ("8.2.2", "pass"), ("8.2.8", "not_assessed"), ("8.3.4", "pass"),
    ]
    pci = res["summary"]["frameworks"]["pci-dss"]
    assert pci["requirements_by_status"] == {
        "pass": 2, "fail": 0, "error": 0, "waived": 0, "not_applicable": 0, "not_assessed": 1,
    }
    assert pci["requirements_compliance_pct"] == 100.0
    assert "not_applicable, waived and skipped are excluded" in res["summary"]["compliance_note"]


def test_not_applicable_requirements_are_out_of_the_percentage(tmp_path):
    res = results(tmp_path, WEAK, installed=False)
    assert {r["id"]: r["status"] for r in res["requirements"]["cis"]} == {
        "5.1.6": "not_applicable", "5.1.7": "not_assessed", "5.1.16": "not_applicable",
        "5.1.20": "not_applicable", "5.1.22": "not_assessed",
    }
    cis = res["summary"]["frameworks"]["cis"]
    assert (cis["requirements_compliance_pct"], cis["compliance_pct"]) == (None, None)


def test_a_waived_rule_leaves_the_requirement_waived_only_if_nothing_fails(tmp_path):
    wfile = tmp_path / "waivers.yaml"
    wfile.write_text("- {rule_id: v-ssh-ciphers, justification: legacy clients until Q3, expires: 2999-01-01}\n")
    config = "MaxAuthTries 4\nPermitRootLogin no\nCiphers aes128-ctr\n"
    res = results(tmp_path, config, waivers=load_waivers(wfile))
    assert {r["id"]: r["status"] for r in res["requirements"]["pci-dss"]}["8.3.4"] == "waived"
    assert {r["id"]: r["status"] for r in res["requirements"]["cis"]}["5.1.6"] == "waived"


def test_a_standard_keeps_only_its_own_requirements(tmp_path):
    res = results(tmp_path, WEAK, standard="pci-dss")
    assert list(res["requirements"]) == ["pci-dss"]
