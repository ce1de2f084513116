"""Seal an Envelope's private parts to the exchange's transport key (docs/publishing.md):
HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, export-only AEAD,
once per session; then XChaCha20-Poly1305 per message."""
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from handoff.v1 import events_pb2

INFO = b"handoff-transport-v1"
EXPORT_CONTEXT = b"handoff-transport-key"
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0xFFFF   # X25519-SHA256, HKDF-SHA256, export only

# The free-text fields of each event type, in order (services/domain/src/private.rs).
FREE_TEXT = {
    "incident_reported": ["narrative"],
    "eviction_ordered": ["protected_area"],
    "referral_made": ["reason"],
    "referral_declined": ["reason"],
    "session_missed": ["reason"],
    "handoff_requested": ["reason"],
    "handoff_declined": ["reason"],
    "programme_dropped_out": ["reason"],
    "case_closed": ["reason"],
    "contact_attempted": ["note"],
    "intake_completed": ["note"],
    "session_attended": ["note"],
    "risk_assessed": ["note"],
    "programme_completed": ["note"],
    "victim_help_offered": ["note"],
    "eviction_compliance_checked": ["note"],
    "eviction_breached": ["narrative"],
    "eviction_objection": ["note"],
    "eviction_ended_early": ["reason"],
    "preliminary_measure": ["note"],
    "compliance_reported": ["note"],
    "risk_alert_raised": ["note"],
    "endangered_person_recorded": ["shelter", "school"],
}
# The event types that carry `subject_details`.
WITH_DETAILS = {"incident_reported", "referral_made", "endangered_person_recorded"}


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or b"\0" * 32, b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + labeled + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def hpke_export(pk_r: bytes, info: bytes, exporter_context: bytes, length: int,
                sk_e: X25519PrivateKey | None = None, aead_id: int = AEAD_ID) -> tuple[bytes, bytes]:
    """RFC 9180 SetupBaseS followed by Export: returns (enc, exported secret)."""
    kem_suite = b"KEM" + struct.pack(">H", KEM_ID)
    suite = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, aead_id)
    sk_e = sk_e or X25519PrivateKey.generate()
    enc = sk_e.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    dh = sk_e.exchange(X25519PublicKey.from_public_bytes(pk_r))
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(kem_suite, eae_prk, b"shared_secret", enc + pk_r, 32)
    context = (b"\x00"  # mode base
               + _labeled_extract(suite, b"", b"psk_id_hash", b"")
               + _labeled_extract(suite, b"", b"info_hash", info))
    secret = _labeled_extract(suite, shared_secret, b"secret", b"")
    exporter_secret = _labeled_expand(suite, secret, b"exp", context, 32)
    return enc, _labeled_expand(suite, exporter_secret, b"sec", exporter_context, length)


def parse_transport_key(text: str) -> tuple[int, bytes]:
    """`handoff-transport-v1 <epoch> <64 hex digits>` (`handoff key show --transport`)."""
    lines = (line.strip() for line in text.splitlines())
    fields = next((line for line in lines if line and not line.startswith("#")), "").split()
    if len(fields) != 3 or fields[0] != "handoff-transport-v1" or len(fields[2]) != 64:
        raise ValueError("not a Handoff transport public key")
    return int(fields[1]), bytes.fromhex(fields[2])


class Sealer:
    """One key agreement with one epoch's key; seals any number of envelopes."""

    def __init__(self, transport_key_line: str):
        self.epoch, public = parse_transport_key(transport_key_line)
        self.enc, self.key = hpke_export(public, INFO, EXPORT_CONTEXT, 32)

    def seal(self, envelope: events_pb2.Envelope) -> None:
        """Takes the private parts out of `envelope` (in place) into its transport_seal."""
        kind = envelope.WhichOneof("event")
        if kind is None:
            return
        event = getattr(envelope, kind)
        parts = events_pb2.PrivateParts()
        private = False
        if kind in WITH_DETAILS and event.HasField("subject_details"):
            parts.details.SetInParent()   # present even when empty, as the exchange reads it
            parts.details.CopyFrom(event.subject_details)
            event.ClearField("subject_details")
            private = True
        for field in FREE_TEXT.get(kind, []):
            value = getattr(event, field)
            if value:
                if "\x01" in value:
                    raise ValueError(f"{field} may not contain U+0001")
                setattr(event, field, f"\x01sealed/0/{len(parts.text)}")
                parts.text.append(value)
                private = True
        if not private:
            return                       # nothing private: publish it as it is
        agency, event_id = envelope.source_agency.encode(), envelope.event_id.encode()
        aad = INFO + _u64(len(agency)) + agency + _u64(len(event_id)) + event_id + _u64(self.epoch)
        nonce = os.urandom(24)
        envelope.transport_seal.epoch = self.epoch
        envelope.transport_seal.encapsulated_key = self.enc
        envelope.transport_seal.nonce = nonce
        envelope.transport_seal.ciphertext = crypto_aead_xchacha20poly1305_ietf_encrypt(
            parts.SerializeToString(), aad, nonce, self.key)
