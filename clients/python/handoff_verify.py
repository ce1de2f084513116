"""Receipts are signed a tree at a time: the receipts of one agency in one committed batch
are the leaves of an RFC 9162 Merkle tree, and the exchange signs the tree's head once
with Ed25519. Each receipt carries the head, the signature and its inclusion proof."""
import hashlib

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from handoff.v1 import exchange_pb2

TREE_FIELDS = ("signature", "tree_size", "tree_root", "leaf_index", "inclusion_path")


def leaf(receipt: exchange_pb2.Receipt) -> bytes:
    """The tree's leaf: the receipt encoded without the fields of its tree."""
    body = exchange_pb2.Receipt()
    body.CopyFrom(receipt)
    for field in TREE_FIELDS:
        body.ClearField(field)
    return body.SerializeToString()


def root_from_inclusion_proof(leaf_bytes: bytes, index: int, size: int, path) -> bytes:
    """RFC 9162 section 2.1.3.2: the root that `path` leads to from the leaf at `index`."""
    if index >= size:
        raise BadSignatureError("leaf index outside the tree")
    fn, sn = index, size - 1
    r = hashlib.sha256(b"\x00" + leaf_bytes).digest()
    for p in path:
        if len(p) != 32:
            raise BadSignatureError("inclusion proof holds a hash that is not 32 bytes")
        if sn == 0:
            raise BadSignatureError("inclusion proof longer than the tree")
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise BadSignatureError("inclusion proof shorter than the tree")
    return r


def tree_head_message(size: int, root: bytes) -> bytes:
    """The bytes the tree head's signature covers."""
    return b"handoff-receipts-v1" + size.to_bytes(8, "big") + root


def verify_receipt(receipt: exchange_pb2.Receipt, public_key_hex: str) -> None:
    """Raises nacl.exceptions.BadSignatureError unless the exchange whose key
    `handoff key show` printed signed the tree this receipt, as it reads, belongs to."""
    VerifyKey(bytes.fromhex(public_key_hex)).verify(
        tree_head_message(receipt.tree_size, receipt.tree_root), receipt.signature)
    root = root_from_inclusion_proof(
        leaf(receipt), receipt.leaf_index, receipt.tree_size, receipt.inclusion_path)
    if root != receipt.tree_root:
        raise BadSignatureError(f"receipt for {receipt.event_id} is not in the signed tree")
