"""End to end against a real nats-server and `handoff serve`, as docs/integrating.md
section 7 does it: the police publish a case referred to the programme with the
subject's details sealed, verify the receipts and look them up; the programme reads
the case over mTLS and watches it; an auditor exports the log and verifies it."""
import base64
import json
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

import handoff_export
import handoff_ids as ids
import handoff_read
from handoff.v1 import events_pb2, exchange_pb2, exchange_pb2_grpc
from handoff_publish import Publisher, Status, delivered
from handoff_seal import Sealer, parse_transport_key
from handoff_verify import verify_receipt

POLICE, PROGRAMME, CENTRE, AUDITOR = "police-north", "ngo-men-north", "ic-north", "audit"
T = 1_764_000_000_000                   # the police record's own time, Unix ms
INCIDENT_REF, PERSON_REF = "I-2026-0042", "P-17"
NAME, BORN = "Tomáš Procházka", "1980-01-01"
NARRATIVE = "Officers called to a domestic disturbance."
REASON = "Eviction ordered; offer the programme."
Reason = exchange_pb2.RejectionReason


def envelope(secret: bytes, record_ms: int, case_ref: str, person_ref: str,
             what: str) -> events_pb2.Envelope:
    """The police's envelope of one record, as the guide's example builds it (7.5)."""
    occurred = Timestamp()
    occurred.FromMilliseconds(record_ms)
    return events_pb2.Envelope(
        event_id=ids.event_id(secret, record_ms, POLICE, case_ref, what),
        source_agency=POLICE,
        case_id=ids.case_id(secret, POLICE, case_ref),
        subject_pseudonym=ids.pseudonym(secret, POLICE, person_ref),
        occurred_at=occurred,
        actor="officer 4711",
        correlation_id=case_ref,
        schema_version=1,
    )


def sealed(sealer: Sealer, env: events_pb2.Envelope) -> events_pb2.Envelope:
    """A sealed copy: the original keeps its private parts, for publishing again."""
    copy = events_pb2.Envelope()
    copy.CopyFrom(env)
    sealer.seal(copy)
    return copy


def cases_as(deployment, agency: str) -> exchange_pb2_grpc.CasesServiceStub:
    return exchange_pb2_grpc.CasesServiceStub(
        handoff_read.channel(agency, deployment.grpc_target, deployment.certs))


def receipt_for(receipts: dict, env: events_pb2.Envelope) -> exchange_pb2.Receipt:
    assert env.event_id in receipts, f"no receipt for {env.WhichOneof('event')} {env.event_id}"
    return receipts[env.event_id]


@dataclass
class Case:
    """What the police published, and what the exchange answered."""

    secret: bytes
    incident: events_pb2.Envelope     # as built, private parts in it
    referral: events_pb2.Envelope
    sent: list[events_pb2.Envelope]   # as published, sealed
    receipts: dict[str, exchange_pb2.Receipt]

    @property
    def case_id(self) -> str:
        return self.incident.case_id

    def receipt(self, env: events_pb2.Envelope) -> exchange_pb2.Receipt:
        return receipt_for(self.receipts, env)


@pytest.fixture(scope="module")
def sealer(deployment) -> Sealer:
    with open(deployment.transport_key) as f:
        return Sealer(f.read())


def _publisher(deployment, loop, agency: str):
    pub = loop.run_until_complete(Publisher.connect(deployment.nats_url, agency, deployment.seed(agency)))
    yield pub
    loop.run_until_complete(pub.close())


@pytest.fixture(scope="module")
def police(deployment, loop):
    yield from _publisher(deployment, loop, POLICE)


@pytest.fixture(scope="module")
def programme(deployment, loop):
    yield from _publisher(deployment, loop, PROGRAMME)


@pytest.fixture(scope="module")
def case(deployment, loop, police, sealer) -> Case:
    """An incident with the subject's details and a narrative, then a referral to the
    programme on the same case: both sealed, published, and their receipts."""
    secret = ids.load_secret(deployment.secret_file(POLICE))
    incident = envelope(secret, T, INCIDENT_REF, PERSON_REF, "incident")
    incident.incident_reported.incident_ref = INCIDENT_REF
    incident.incident_reported.narrative = NARRATIVE
    incident.incident_reported.area = "North"
    incident.incident_reported.linked_persons.add(role=events_pb2.LinkedPerson.ROLE_VICTIM, age_band="30-39")
    incident.incident_reported.subject_details.full_name = NAME
    incident.incident_reported.subject_details.date_of_birth = BORN

    referral = envelope(secret, T + 1, INCIDENT_REF, PERSON_REF, "referral")
    referral.referral_made.referral_id = ids.step_id(secret, "ref", POLICE, INCIDENT_REF)
    referral.referral_made.to_agency = PROGRAMME
    referral.referral_made.reason = REASON

    sent = [sealed(sealer, incident), sealed(sealer, referral)]
    receipts = loop.run_until_complete(police.publish_and_wait(sent))
    for env in sent:                # else every test of the case fails for this one reason
        r = receipt_for(receipts, env)
        assert r.status == Status.STATUS_ACCEPTED, (env.WhichOneof("event"), Reason.Name(r.reason), r.detail)
    return Case(secret, incident, referral, sent, receipts)


def test_ids_are_the_ones_the_rust_adapters_derive(deployment):
    secret = ids.load_secret(deployment.secret_file(POLICE))
    derived = {
        "case_id": ids.case_id(secret, POLICE, INCIDENT_REF),
        "pseudonym": ids.pseudonym(secret, POLICE, PERSON_REF),
        "event_id": ids.event_id(secret, T, POLICE, INCIDENT_REF, "incident"),
        "step_id": ids.step_id(secret, "ref", POLICE, INCIDENT_REF),
    }
    assert derived == deployment.rust_ids


def test_personal_details_and_free_text_leave_the_agency_sealed(deployment, case):
    incident, referral = case.sent
    epoch, _ = parse_transport_key(open(deployment.transport_key).read())
    for env in case.sent:
        assert env.transport_seal.epoch == epoch
        assert len(env.transport_seal.encapsulated_key) == 32 and len(env.transport_seal.nonce) == 24
        body = env.SerializeToString()
        for secret_text in (NAME, BORN, NARRATIVE, REASON):
            assert secret_text.encode() not in body
    assert not incident.incident_reported.HasField("subject_details")
    assert incident.incident_reported.narrative == "\x01sealed/0/0"
    assert incident.incident_reported.area == "North"          # not private: as it was
    assert referral.referral_made.reason == "\x01sealed/0/0"
    assert referral.referral_made.to_agency == PROGRAMME


def test_both_events_are_accepted_with_receipts_signed_by_the_exchange(deployment, case):
    incident, referral = (case.receipt(env) for env in case.sent)
    for r in (incident, referral):
        assert r.status == Status.STATUS_ACCEPTED and delivered(r)
        verify_receipt(r, deployment.signing_key)
        assert r.case_id == case.case_id == deployment.rust_ids["case_id"]
        assert len(r.hash) == 32 and r.stream_sequence > 0
    assert (incident.case_version, referral.case_version) == (1, 2)
    assert referral.sequence > incident.sequence           # one agency's events keep their order

    forged = exchange_pb2.Receipt()
    forged.CopyFrom(referral)
    forged.case_version = 3
    with pytest.raises(BadSignatureError):
        verify_receipt(forged, deployment.signing_key)
    with pytest.raises(BadSignatureError):
        verify_receipt(referral, SigningKey.generate().verify_key.encode().hex())


def test_publishing_again_is_all_duplicates_and_look_ups_answer(deployment, loop, police, programme,
                                                                 sealer, case):
    again = [sealed(sealer, env) for env in (case.incident, case.referral)]   # a fresh seal each
    receipts = loop.run_until_complete(police.publish_and_wait(again))
    for env in again:
        first, r = case.receipt(env), receipt_for(receipts, env)
        verify_receipt(r, deployment.signing_key)
        assert r.status == Status.STATUS_DUPLICATE and delivered(r)
        assert (r.sequence, r.hash, r.case_id) == (first.sequence, first.hash, first.case_id)

    looked_up = loop.run_until_complete(police.lookup(case.incident.event_id))
    assert looked_up is not None
    verify_receipt(looked_up, deployment.signing_key)
    assert looked_up.status == Status.STATUS_DUPLICATE
    assert looked_up.sequence == case.receipt(case.incident).sequence
    never = ids.event_id(case.secret, T, POLICE, INCIDENT_REF, "never published")
    assert loop.run_until_complete(police.lookup(never)) is None
    # A look-up answers only the asking agency's own event ids.
    assert loop.run_until_complete(programme.lookup(case.incident.event_id)) is None


def test_an_envelope_with_free_text_in_the_clear_is_refused(deployment, loop, police, case):
    clear = envelope(case.secret, T + 2, INCIDENT_REF, PERSON_REF, "risk")
    clear.risk_assessed.instrument = "ODARA"
    clear.risk_assessed.level = events_pb2.RISK_LEVEL_HIGH
    clear.risk_assessed.note = "Said he would come back."                 # not sealed
    r = receipt_for(loop.run_until_complete(police.publish_and_wait([clear])), clear)
    verify_receipt(r, deployment.signing_key)
    assert r.status == Status.STATUS_REJECTED and not delivered(r)
    assert r.reason == Reason.REJECTION_REASON_UNSEALED, r.detail
    police_view = handoff_read.get_case(cases_as(deployment, POLICE), case.case_id, "check")
    assert police_view.version == 2


def test_the_programme_reads_the_referral_over_mtls(deployment, case):
    cases = cases_as(deployment, PROGRAMME)
    items = cases.Inbox(exchange_pb2.InboxRequest(purpose="morning inbox"), timeout=10).items
    item = next((i for i in items if i.case_id == case.case_id), None)
    assert item is not None, f"{case.case_id} not in the programme's inbox: {items}"
    assert item.kind == exchange_pb2.InboxItem.KIND_REFERRAL
    assert (item.from_agency, item.to_agency) == (POLICE, PROGRAMME)
    assert item.item_id == case.referral.referral_made.referral_id
    assert item.subject_pseudonym == case.incident.subject_pseudonym
    assert item.reason == REASON

    view = handoff_read.get_case(cases, case.case_id, "referral triage")
    assert view is not None
    assert view.status == exchange_pb2.CASE_STATUS_REFERRED
    assert (view.holder, view.opened_by, view.version) == (POLICE, POLICE, 2)
    # Opened from the seal and re-sealed by the exchange, then resolved for a party
    # granted personal details and reasons, but not the police's incidents.
    assert (view.subject_details.full_name, view.subject_details.date_of_birth) == (NAME, BORN)
    assert [(r.to_agency, r.reason) for r in view.referrals] == [(PROGRAMME, REASON)]
    assert all(not i.narrative for i in view.incidents)
    assert case.case_id in [c.case_id for c in handoff_read.list_cases(cases, "daily review")]

    police_view = handoff_read.get_case(cases_as(deployment, POLICE), case.case_id, "own case")
    assert [i.narrative for i in police_view.incidents] == [NARRATIVE]


def test_an_agency_without_a_part_is_answered_not_found(deployment, case):
    centre = cases_as(deployment, CENTRE)
    assert handoff_read.get_case(centre, case.case_id, "curiosity") is None
    with pytest.raises(grpc.RpcError) as refused:
        centre.GetCase(exchange_pb2.GetCaseRequest(case_id=case.case_id, purpose="curiosity"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    missing = ids.case_id(case.secret, POLICE, "no such incident")
    with pytest.raises(grpc.RpcError) as absent:
        centre.GetCase(exchange_pb2.GetCaseRequest(case_id=missing, purpose="curiosity"), timeout=10)
    # Worded the same: the answer does not tell whether the case exists.
    assert absent.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.details() == f"no case {case.case_id}"
    assert absent.value.details() == f"no case {missing}"
    with pytest.raises(grpc.RpcError) as denied:
        list(cases_as(deployment, PROGRAMME).ReadLog(exchange_pb2.ReadLogRequest(), timeout=10))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_health_and_reflection_name_the_services(deployment):
    ch = handoff_read.channel(PROGRAMME, deployment.grpc_target, deployment.certs)
    health = health_pb2_grpc.HealthStub(ch)
    for service in ("", "handoff.v1.CasesService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    services = set(ProtoReflectionDescriptorDatabase(ch).get_services())
    assert {"handoff.v1.CasesService", "handoff.v1.DirectoryService",
            "handoff.v1.StatisticsService", "grpc.health.v1.Health"} <= services


class _Done(Exception):
    """Ends a watch from inside its handler."""


def test_watch_catches_up_follows_live_and_resumes(deployment, loop, programme, case):
    cases = cases_as(deployment, PROGRAMME)
    referral_seq = case.receipt(case.referral).sequence
    secret = ids.load_secret(deployment.secret_file(PROGRAMME))
    occurred = Timestamp()
    occurred.FromMilliseconds(T + 60_000)
    # Answering the referral is publishing as the programme, on the police's case and subject.
    accept = events_pb2.Envelope(
        event_id=ids.event_id(secret, T + 60_000, PROGRAMME, case.case_id, "accept"),
        source_agency=PROGRAMME, case_id=case.case_id,
        subject_pseudonym=case.incident.subject_pseudonym, occurred_at=occurred, schema_version=1)
    accept.referral_accepted.referral_id = case.referral.referral_made.referral_id
    answered: list[exchange_pb2.Receipt] = []
    seen: list[exchange_pb2.WatchCasesResponse] = []

    def handle(update: exchange_pb2.WatchCasesResponse) -> None:
        seen.append(update)
        if update.sequence == referral_seq:          # caught up: answer, and watch it arrive
            r = receipt_for(loop.run_until_complete(programme.publish_and_wait([accept])), accept)
            assert r.status == Status.STATUS_ACCEPTED, (Reason.Name(r.reason), r.detail)
            verify_receipt(r, deployment.signing_key)
            answered.append(r)
        elif answered and update.sequence == answered[0].sequence:
            raise _Done

    with pytest.raises(_Done):
        handoff_read.watch(cases, 0, "sync", handle, timeout=30)
    sequences = [u.sequence for u in seen]
    assert sequences == sorted(set(sequences)), "in log order, none repeated"
    assert {u.case.case_id for u in seen} == {case.case_id}
    caught_up = next(u for u in seen if u.sequence == referral_seq)
    assert (caught_up.event_type, caught_up.case.status, caught_up.case.version) == (
        "referral_made", exchange_pb2.CASE_STATUS_REFERRED, 2)
    live = seen[-1]
    assert (live.event_type, live.case.status, live.case.holder, live.case.version) == (
        "referral_accepted", exchange_pb2.CASE_STATUS_ACCEPTED, PROGRAMME, 3)

    # Resuming after the referral gives what followed it: nothing skipped, nothing repeated.
    resumed: list[exchange_pb2.WatchCasesResponse] = []

    def follow(update: exchange_pb2.WatchCasesResponse) -> None:
        resumed.append(update)
        if update.sequence == live.sequence:
            raise _Done

    with pytest.raises(_Done):
        handoff_read.watch(cases, referral_seq, "sync, resumed", follow, timeout=30)
    assert [u.sequence for u in resumed] == [s for s in sequences if s > referral_seq]
    assert resumed[-1] == live


def test_the_fhir_view_is_valid_r4_and_redacted_like_get_case(deployment, case):
    """GetCaseFhir's bundle validates with a maintained FHIR library (fhir.resources,
    R4B models), carries one ServiceRequest and one Task per referral with the Task's
    status following the referral, and shows only what GetCase shows the caller."""
    from fhir.resources.R4B.bundle import Bundle

    programme = cases_as(deployment, PROGRAMME)
    view = handoff_read.get_case(programme, case.case_id, "handed to the health system")
    raw = handoff_read.get_case_fhir(programme, case.case_id, "handed to the health system")
    assert raw is not None
    bundle = Bundle.model_validate(raw)          # raises on anything that is not valid FHIR
    assert bundle.type == "collection"
    kinds = [e.resource.get_resource_type() for e in bundle.entry]
    assert kinds == ["Patient", "ServiceRequest", "Task"], kinds
    patient, request, task = (e.resource for e in bundle.entry)
    assert patient.name[0].text == view.subject_details.full_name == NAME
    assert request.requester.identifier.value == POLICE
    assert request.performer[0].identifier.value == PROGRAMME
    assert [c.text for c in request.reasonCode] == [REASON]
    assert task.focus.reference == bundle.entry[1].fullUrl
    # The watch test above had the programme accept the referral.
    expected = {exchange_pb2.CASE_STATUS_REFERRED: "requested",
                exchange_pb2.CASE_STATUS_ACCEPTED: "accepted"}[view.status]
    assert task.status == expected
    assert task.owner.identifier.value == PROGRAMME
    # The police narrative is not the programme's to see, in FHIR as in GetCase.
    assert NARRATIVE not in json.dumps(raw)

    # The auditor's kind is not granted personal details: no Patient, a pseudonym instead.
    audited = handoff_read.get_case_fhir(cases_as(deployment, AUDITOR), case.case_id, "audit")
    audit_bundle = Bundle.model_validate(audited)
    assert [e.resource.get_resource_type() for e in audit_bundle.entry] == ["ServiceRequest", "Task"]
    assert NAME not in json.dumps(audited, ensure_ascii=False)
    assert audit_bundle.entry[1].resource.for_fhir.identifier.value == view.subject_pseudonym
    # No part in the case: nothing, as with GetCase.
    assert handoff_read.get_case_fhir(cases_as(deployment, CENTRE), case.case_id, "curious") is None


def _record_line(item: dict) -> str:
    return json.dumps(item, separators=(",", ":")) + "\n"


def test_the_export_verifies_and_a_tampered_record_is_named(deployment, case, tmp_path):
    auditor = cases_as(deployment, AUDITOR)
    path = deployment.out / "python-export.jsonl"
    last = handoff_export.export(auditor, str(path))
    head = auditor.GetLogHead(exchange_pb2.GetLogHeadRequest(), timeout=10).head
    assert last == head.sequence >= case.receipt(case.referral).sequence
    assert handoff_export.verify(str(path), deployment.signing_key) == last

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    records = [json.loads(line) for line in lines[1:-1]]
    checkpoint = json.loads(lines[-1])["checkpoint"]
    assert [r["sequence"] for r in records] == list(range(1, last + 1))
    assert (checkpoint["public_key"], checkpoint["head_hash"]) == (deployment.signing_key, head.hash.hex())
    # The log holds references and ciphertext, never the private parts themselves.
    logged = {}
    for r in records:
        body = base64.b64decode(r["envelope"])
        assert not any(text.encode() in body for text in (NAME, BORN, NARRATIVE, REASON))
        env = events_pb2.Envelope.FromString(body)
        logged[env.event_id] = (r, env)
    incident_record, incident = logged[case.incident.event_id]
    assert incident.incident_reported.narrative == f"\x01sealed/{incident_record['sequence']}/0"
    assert not incident.incident_reported.HasField("subject_details")
    assert "sealed_details" in incident_record and not incident.HasField("transport_seal")

    def refused(name: str, tampered: list[str], key: str = deployment.signing_key) -> str:
        bad = tmp_path / name
        bad.write_text("".join(tampered), encoding="utf-8")
        with pytest.raises(ValueError) as failure:
            handoff_export.verify(str(bad), key)
        return str(failure.value)

    altered = json.loads(lines[2])
    body = bytearray(base64.b64decode(altered["envelope"]))
    body[len(body) // 2] ^= 0x01
    altered["envelope"] = base64.b64encode(bytes(body)).decode()
    assert refused("altered", lines[:2] + [_record_line(altered)] + lines[3:]) == \
        "record 2: altered (hash does not match)"
    assert refused("removed", lines[:1] + lines[2:]).startswith("record 1: found 2 instead")
    assert refused("reordered", [lines[0], lines[2], lines[1]] + lines[3:]).startswith("record 1: found 2")
    assert refused("truncated", lines[:-1]) == "no checkpoint (truncated?)"
    assert refused("appended", lines + [lines[1]]).endswith("more after the checkpoint")
    other_key = SigningKey.generate().verify_key.encode().hex()
    assert refused("other-key", lines, other_key) == "checkpoint signature does not verify with the given key"
