"""The receipt verifier's inclusion proofs against the Merkle tree as RFC 9162 section 2.1
defines it, computed here by the definition itself (no exchange needed)."""
import hashlib

import pytest
from nacl.exceptions import BadSignatureError

from handoff_verify import root_from_inclusion_proof


def mth(leaves):
    """RFC 9162 2.1.1: the Merkle Tree Hash, by its recursive definition."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def path(m, leaves):
    """RFC 9162 2.1.3.1: the inclusion path of leaf m, by its recursive definition."""
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 13, 31, 256])
def test_every_leaf_proves_to_the_root_and_no_other_leaf_does(size):
    leaves = [f"receipt {i}".encode() for i in range(size)]
    root = mth(leaves)
    for m in range(size):
        assert root_from_inclusion_proof(leaves[m], m, size, path(m, leaves)) == root
        if size > 1:
            other = (m + 1) % size
            assert root_from_inclusion_proof(leaves[other], m, size, path(m, leaves)) != root
    with pytest.raises(BadSignatureError):
        root_from_inclusion_proof(leaves[0], size, size, path(0, leaves))
    if size > 1:
        with pytest.raises(BadSignatureError):
            root_from_inclusion_proof(leaves[0], 0, size, path(0, leaves)[:-1])
