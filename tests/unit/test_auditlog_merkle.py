"""RFC 6962 tree heads, inclusion and consistency proofs against brute-force recomputation."""

from __future__ import annotations

import hashlib

import pytest

from secpolicy.auditlog.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def mth(data: list[bytes]) -> bytes:
    """The RFC 6962 definition, recursively, as the reference."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def path_ref(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return path_ref(m, data[:k]) + [mth(data[k:])]
    return path_ref(m - k, data[k:]) + [mth(data[:k])]


def subproof_ref(m: int, data: list[bytes], b: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if b else [mth(data)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof_ref(m, data[:k], b) + [mth(data[k:])]
    return subproof_ref(m - k, data[k:], False) + [mth(data[:k])]


SIZES = range(65)


def items(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


def test_rfc6962_test_vector_empty_and_known_leaf() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # RFC 6962 leaf hash of the empty string (0x00 prefix), as used by CT test suites.
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


@pytest.mark.parametrize("n", SIZES)
def test_root_and_frontier_match_reference(n: int) -> None:
    data = items(n)
    leaves = [leaf_hash(d) for d in data]
    f = Frontier()
    for leaf in leaves:
        f.append(leaf)
    assert root_of(leaves) == mth(data)
    assert f.root() == mth(data)
    again = Frontier.from_list(f.size, f.to_list())
    assert again.root() == f.root()


@pytest.mark.parametrize("n", range(1, 65))
def test_inclusion_proofs_for_every_leaf(n: int) -> None:
    data = items(n)
    leaves = [leaf_hash(d) for d in data]
    root = mth(data)
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        assert proof == path_ref(i, data)
        verify_inclusion(leaves[i], i, n, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(b"forged"), i, n, proof, root)
        if proof:
            with pytest.raises(ProofError):
                verify_inclusion(leaves[i], i, n, proof[:-1], root)
            bad = list(proof)
            bad[0] = node_hash(bad[0], bad[0])
            with pytest.raises(ProofError):
                verify_inclusion(leaves[i], i, n, bad, root)
        if n > 1:
            with pytest.raises(ProofError):
                verify_inclusion(leaves[i], (i + 1) % n, n, proof, root)


@pytest.mark.parametrize("n", range(1, 65))
def test_consistency_proofs_for_every_prefix(n: int) -> None:
    data = items(n)
    leaves = [leaf_hash(d) for d in data]
    new_root = mth(data)
    for m in range(1, n + 1):
        proof = consistency_proof(leaves, m)
        assert proof == subproof_ref(m, data, True)
        old_root = mth(data[:m])
        verify_consistency(m, n, old_root, new_root, proof)
        if m < n:
            with pytest.raises(ProofError):
                verify_consistency(m, n, mth(items(m + 1)[1:]), new_root, proof)
            with pytest.raises(ProofError):
                verify_consistency(m, n, old_root, mth(data[:-1] + [b"x"]), proof)
            with pytest.raises(ProofError):
                verify_consistency(m, n, old_root, new_root, proof + [old_root])


def test_consistency_detects_a_rewritten_prefix() -> None:
    data = items(20)
    forged = list(data)
    forged[3] = b"rewritten"
    proof = consistency_proof([leaf_hash(d) for d in forged], 8)
    with pytest.raises(ProofError):
        verify_consistency(8, 20, mth(data[:8]), mth(forged), proof)


def test_out_of_range_requests_are_refused() -> None:
    leaves = [leaf_hash(d) for d in items(4)]
    with pytest.raises(ProofError):
        inclusion_proof(leaves, 4)
    with pytest.raises(ProofError):
        consistency_proof(leaves, 0)
    with pytest.raises(ProofError):
        verify_consistency(5, 4, b"", b"", [])
