"""Ids keyed by the agency's own secret, as services/adapters/src/ids.rs derives them."""
import hashlib
import hmac
import uuid


def load_secret(path: str) -> bytes:
    """The 32-byte secret `handoff agency-secret` wrote (64 hex digits)."""
    with open(path) as f:
        secret = bytes.fromhex(f.read().strip())
    if len(secret) != 32:
        raise ValueError(f"{path}: expected 64 hex digits")
    return secret


def _mac(secret: bytes, *parts: str) -> bytes:
    """HMAC-SHA-256 over the parts, each prefixed by its length (8 bytes, big-endian)."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in parts:
        data = part.encode()
        mac.update(len(data).to_bytes(8, "big"))
        mac.update(data)
    return mac.digest()


def event_id(secret: bytes, unix_ms: int, *key: str) -> str:
    """A UUIDv7 whose time is `unix_ms` and whose other bits are a MAC of `key`:
    the same record gives the same id on every run."""
    rand = _mac(secret, "handoff-event", *key)[:10]
    b = bytearray(max(unix_ms, 0).to_bytes(6, "big") + rand)
    b[6] = 0x70 | (b[6] & 0x0F)   # version 7
    b[8] = 0x80 | (b[8] & 0x3F)   # RFC 9562 variant
    return str(uuid.UUID(bytes=bytes(b)))


def case_id(secret: bytes, agency: str, local_ref: str) -> str:
    """The case id of the agency's own reference: `<agency>/case-<20 hex digits>`."""
    return f"{agency}/case-{_mac(secret, 'handoff-case', agency, local_ref).hex()[:20]}"


def pseudonym(secret: bytes, agency: str, person_ref: str) -> str:
    """The pseudonym of a person the agency knows by `person_ref`: `<agency>/subj-…`."""
    return f"{agency}/subj-{_mac(secret, 'handoff-subject', agency, person_ref).hex()[:20]}"


def step_id(secret: bytes, prefix: str, *key: str) -> str:
    """A referral or handoff id, unique within a case (prefix "ref" or "handoff")."""
    return f"{prefix}-{_mac(secret, 'handoff-step', prefix, *key).hex()[:12]}"
