"""Scan every tree of the conformance corpus with the secpolicy found on sys.path and write the
verdict of every bundled rule: the base tree in full, each variant as its differences.

    python tests/conformance/record.py --policies policies --out verdicts.json
    PYTHONPATH=/path/to/main/checkout python tests/conformance/record.py \\
        --policies /path/to/main/checkout/policies --out tests/conformance/baseline-main.json

`compare` prints how many verdicts differ between two such files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import corpus  # the trees as data


def _scanner(policies: Path):  # type: ignore[no-untyped-def]
    from secpolicy.engine import scan
    from secpolicy.vocabulary import builtin_registry, load_policies

    reg = builtin_registry()
    ps = load_policies([policies], reg)

    def run(root: Path) -> dict[str, str]:
        return {f.rule_id: f.status.value for f in scan(ps, reg, root=str(root)).findings}

    return run


def trees(dest: Path) -> Iterator[tuple[corpus.Variant | None, Path]]:
    """The base tree, then each variant's tree (a copy of the base with its edits)."""
    base = corpus.build_base(dest, "base")
    yield None, base
    for v in corpus.VARIANTS:
        root = corpus.build(dest, v, base)
        yield v, root
        shutil.rmtree(root)


def record(policies: Path) -> dict:
    run = _scanner(policies)
    out: dict = {"variants": {}}
    with tempfile.TemporaryDirectory(prefix="secpolicy-corpus-") as tmp:
        empty = Path(tmp) / "empty"
        empty.mkdir()
        out["empty"] = run(empty)
        for v, root in trees(Path(tmp)):
            got = run(root)
            if v is None:
                out["base"] = got
            else:
                out["variants"][v.id] = {r: s for r, s in got.items() if out["base"].get(r) != s}
    return out


def verdicts(data: dict) -> dict[tuple[str, str], str]:
    """(tree, rule) -> status for every tree of a recording."""
    out = {("empty", r): s for r, s in data["empty"].items()}
    out |= {("base", r): s for r, s in data["base"].items()}
    for vid, diff in data["variants"].items():
        for r, s in data["base"].items():
            out[(vid, r)] = diff.get(r, s)
    return out


def _kinds(a: dict, b: dict, keys: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in keys:
        out[f"{a[k]}->{b[k]}"] = out.get(f"{a[k]}->{b[k]}", 0) + 1
    return dict(sorted(out.items()))


def compare(before: dict, after: dict) -> dict:
    """How many (tree, rule) verdicts changed, over the trees and rules both recordings have:
    in all, on the base tree, on the empty root, and the changes a variant makes beyond the
    base tree's (a rule whose verdict changed the same way on the base tree is not counted
    again for every variant)."""
    a, b = verdicts(before), verdicts(after)
    common = sorted(a.keys() & b.keys())
    changed = [k for k in common if a[k] != b[k]]
    on = {t: [k for k in changed if k[0] == t] for t in ("base", "empty")}
    specific = [
        (t, r)
        for t, r in changed
        if t not in ("base", "empty")
        and not (a[(t, r)] == a[("base", r)] and b[(t, r)] == b[("base", r)])
    ]
    return {
        "trees": len({t for t, _ in common}),
        "rules": len({r for _, r in common}),
        "compared": len(common),
        "changed": len(changed),
        "changed_kinds": _kinds(a, b, changed),
        "base_tree": {"changed": len(on["base"]), **_kinds(a, b, on["base"])},
        "empty_root": {"changed": len(on["empty"]), **_kinds(a, b, on["empty"])},
        "variants": {
            "changed": len(specific),
            "in_variants": len({t for t, _ in specific}),
            **_kinds(a, b, specific),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd")
    ap.add_argument("--policies", type=Path, default=HERE.parents[1] / "policies")
    ap.add_argument("--out", type=Path)
    cmp = sub.add_parser("compare")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = ap.parse_args()
    if args.cmd == "compare":
        print(
            json.dumps(
                compare(json.loads(args.before.read_text()), json.loads(args.after.read_text())),
                indent=1,
            )
        )
        return
    data = record(args.policies)
    text = json.dumps(data, indent=0, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
