"""Export a Handoff log (ReadLog + GetCheckpoint, as an auditor) and verify an export
(JSON Lines ending in a signed checkpoint) from docs/integrating.md section 6 alone."""
import base64
import hashlib
import json
import sys

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from handoff.v1 import exchange_pb2, exchange_pb2_grpc


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def i64(n: int) -> bytes:
    return n.to_bytes(8, "big", signed=True)


def _line(item: dict) -> str:
    return json.dumps(item, separators=(",", ":")) + "\n"   # as `handoff audit export` writes it


def export(stub: exchange_pb2_grpc.CasesServiceStub, path: str) -> int:
    """Writes the whole log up to the latest signed checkpoint to `path`; returns its sequence."""
    c = stub.GetCheckpoint(exchange_pb2.GetCheckpointRequest(), timeout=10).checkpoint
    with open(path, "w", encoding="utf-8") as f:
        f.write(_line({"format": "handoff-log-export", "version": 1, "from": 1, "to": c.sequence}))
        request = exchange_pb2.ReadLogRequest(from_sequence=1, to_sequence=c.sequence)
        for r in (response.record for response in stub.ReadLog(request, timeout=300)):
            item = {"sequence": r.sequence, "stream_sequence": r.stream_sequence,
                    "recorded_at_unix_ms": r.recorded_at_unix_ms,
                    "envelope": base64.b64encode(r.envelope).decode(),
                    "prev_hash": r.prev_hash.hex(), "hash": r.hash.hex()}
            if r.HasField("sealed_details"):
                item["sealed_details"] = base64.b64encode(r.sealed_details.SerializeToString()).decode()
            f.write(_line(item))
        f.write(_line({"checkpoint": {
            "sequence": c.sequence, "head_hash": c.head_hash.hex(),
            "recorded_at_unix_ms": c.recorded_at_unix_ms,
            "public_key": c.public_key.hex(), "signature": c.signature.hex()}}))
    return c.sequence


def _parse(n: int, line: str) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        raise ValueError(f"line {n}: not JSON") from None


def verify(path: str, public_key_hex: str) -> int:
    """Returns the last verified sequence; raises ValueError naming the first bad record."""
    with open(path, encoding="utf-8") as f:
        header = _parse(1, f.readline())
        if header.get("format") != "handoff-log-export" or header.get("version") != 1:
            raise ValueError("not a Handoff log export, version 1")
        expected = max(header["from"], 1)
        prev = bytes(32) if expected == 1 else None   # a later start: take its prev_hash as given
        checkpoint = None
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            if checkpoint is not None:
                raise ValueError(f"line {n}: more after the checkpoint")
            item = _parse(n, line)
            if "checkpoint" in item:
                checkpoint = item["checkpoint"]
                continue
            seq = item.get("sequence")
            if seq != expected:
                raise ValueError(f"record {expected}: found {seq} instead (removed, inserted or reordered)")
            prev_hash = bytes.fromhex(item["prev_hash"])
            if prev is not None and prev_hash != prev:
                raise ValueError(f"record {seq}: prev_hash is not record {seq - 1}'s hash")
            envelope = base64.b64decode(item["envelope"], validate=True)
            h = hashlib.sha256(prev_hash + u64(seq) + u64(item["stream_sequence"])
                               + i64(item["recorded_at_unix_ms"]) + u64(len(envelope)) + envelope).digest()
            if h.hex() != item["hash"]:
                raise ValueError(f"record {seq}: altered (hash does not match)")
            prev, expected = h, expected + 1
    if checkpoint is None:
        raise ValueError("no checkpoint (truncated?)")
    last = expected - 1
    if checkpoint["sequence"] != last:
        raise ValueError(f"checkpoint names sequence {checkpoint['sequence']}, records end at {last}")
    head = bytes.fromhex(checkpoint["head_hash"])
    if head != prev:
        raise ValueError(f"checkpoint head hash is not record {last}'s hash")
    message = (b"handoff-checkpoint-v1" + u64(checkpoint["sequence"]) + head
               + i64(checkpoint["recorded_at_unix_ms"]))
    try:
        # The key obtained out of band, not the one the file carries.
        VerifyKey(bytes.fromhex(public_key_hex)).verify(message, bytes.fromhex(checkpoint["signature"]))
    except BadSignatureError:
        raise ValueError("checkpoint signature does not verify with the given key") from None
    return last


if __name__ == "__main__":
    try:
        print("verified up to sequence", verify(sys.argv[1], sys.argv[2]))
    except ValueError as e:
        sys.exit(f"{sys.argv[1]}: {e}")
