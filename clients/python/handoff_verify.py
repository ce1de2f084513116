"""Receipts are signed with Ed25519 over the Receipt encoded with `signature` empty."""
from nacl.signing import VerifyKey

from handoff.v1 import exchange_pb2


def verify_receipt(receipt: exchange_pb2.Receipt, public_key_hex: str) -> None:
    """Raises nacl.exceptions.BadSignatureError unless the exchange whose key
    `handoff key show` printed signed it."""
    unsigned = exchange_pb2.Receipt()
    unsigned.CopyFrom(receipt)
    unsigned.ClearField("signature")
    VerifyKey(bytes.fromhex(public_key_hex)).verify(unsigned.SerializeToString(), receipt.signature)
