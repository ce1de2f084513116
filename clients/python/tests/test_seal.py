"""The transport seal's HPKE step against RFC 9180's test vectors, and what sealing
takes out of an envelope (no exchange needed)."""
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from handoff.v1 import events_pb2
from handoff_seal import Sealer, hpke_export, parse_transport_key

# RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
SK_E = "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736"
PK_R = "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d"
ENC = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431"
INFO = "4f6465206f6e2061204772656369616e2055726e"
EXPORTS = [
    (b"", "3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee"),
    (b"\x00", "2e8f0b54673c7029649d4eb9d5e33bf1872cf76d623ff164ac185da9e88c21a5"),
    (b"TestContext", "e9e43065102c3836401bed8c3c3c75ae46be1639869391d62c61f1ec7af54931"),
]
KEY_LINE = f"# handoff key show --transport\nhandoff-transport-v1 7 {PK_R}\n"


@pytest.mark.parametrize("context, exported", EXPORTS)
def test_hpke_export_reproduces_rfc_9180(context: bytes, exported: str):
    sk_e = X25519PrivateKey.from_private_bytes(bytes.fromhex(SK_E))
    enc, value = hpke_export(bytes.fromhex(PK_R), bytes.fromhex(INFO), context, 32, sk_e=sk_e, aead_id=0x0001)
    assert (enc.hex(), value.hex()) == (ENC, exported)


def test_the_transport_key_line_is_parsed_and_anything_else_refused():
    assert parse_transport_key(KEY_LINE) == (7, bytes.fromhex(PK_R))
    for bad in ("", "handoff-transport-v1 7", f"other-tag 7 {PK_R}", f"handoff-transport-v1 7 {PK_R[:-2]}"):
        with pytest.raises(ValueError):
            parse_transport_key(bad)


def test_sealing_moves_details_and_free_text_into_the_seal():
    env = events_pb2.Envelope(event_id="0190f0e2-0000-7000-8000-000000000001", source_agency="police-north")
    env.referral_made.reason = "why"
    env.referral_made.to_agency = "ngo-men-north"
    env.referral_made.subject_details.full_name = "A Name"
    Sealer(KEY_LINE).seal(env)
    assert env.referral_made.reason == "\x01sealed/0/0"
    assert not env.referral_made.HasField("subject_details")
    assert env.referral_made.to_agency == "ngo-men-north"
    seal = env.transport_seal
    assert seal.epoch == 7 and len(seal.encapsulated_key) == 32 and len(seal.nonce) == 24
    assert len(seal.ciphertext) > 16 and b"A Name" not in env.SerializeToString()


def test_nothing_private_is_published_as_it_is_and_the_reference_mark_is_refused():
    sealer = Sealer(KEY_LINE)
    plain = events_pb2.Envelope(event_id="x", source_agency="ngo-men-north")
    plain.referral_accepted.referral_id = "ref-1"
    before = plain.SerializeToString()
    sealer.seal(plain)
    assert plain.SerializeToString() == before
    marked = events_pb2.Envelope(event_id="x", source_agency="police-north")
    marked.case_closed.reason = "see \x01sealed/0/0"
    with pytest.raises(ValueError):
        sealer.seal(marked)
