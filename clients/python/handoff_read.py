"""Read cases over gRPC with the agency's client certificate."""
import json
import time
from collections.abc import Callable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from handoff.v1 import exchange_pb2, exchange_pb2_grpc


def channel(agency: str, target: str = "localhost:50051", certs: str = "data/certs") -> grpc.Channel:
    """An mTLS channel presenting `<certs>/<agency>.pem`, trusting `<certs>/ca.pem`."""
    def read(name: str) -> bytes:
        with open(f"{certs}/{name}", "rb") as f:
            return f.read()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read("ca.pem"),           # the agencies' CA
        private_key=read(f"{agency}.key"),
        certificate_chain=read(f"{agency}.pem"),    # common name = agency id
    )
    return grpc.secure_channel(target, credentials)


def get_case(stub: exchange_pb2_grpc.CasesServiceStub, case_id: str,
             purpose: str) -> exchange_pb2.CaseView | None:
    """The case, or None when it does not exist for us (missing or no part in it: the same)."""
    try:
        request = exchange_pb2.GetCaseRequest(case_id=case_id, purpose=purpose)
        return stub.GetCase(request, timeout=10).case
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise

def get_case_fhir(stub: exchange_pb2_grpc.CasesServiceStub, case_id: str,
                  purpose: str) -> dict | None:
    """The case's referrals as a FHIR R4 Bundle (JSON as a dict), redacted as GetCase is;
    None when the case does not exist for us."""
    try:
        request = exchange_pb2.GetCaseFhirRequest(case_id=case_id, purpose=purpose)
        return json.loads(stub.GetCaseFhir(request, timeout=10).bundle_json)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def list_cases(stub: exchange_pb2_grpc.CasesServiceStub, purpose: str,
               status: int = exchange_pb2.CASE_STATUS_UNSPECIFIED,
               holder: str = "") -> Iterator[exchange_pb2.CaseView]:
    """Every case we may see, page by page."""
    token = ""
    while True:
        page = stub.ListCases(exchange_pb2.ListCasesRequest(
            status=status, holder=holder, page_size=200, page_token=token, purpose=purpose), timeout=30)
        yield from page.cases
        token = page.next_page_token
        if not token:
            return


def watch(stub: exchange_pb2_grpc.CasesServiceStub, after_sequence: int, purpose: str,
          handle: Callable[[exchange_pb2.WatchCasesResponse], None],
          timeout: float | None = None) -> None:
    """Follows case changes from after `after_sequence`, resuming after every disconnect.
    `handle(update)` should persist update.sequence once it has dealt with the update;
    an exception it raises ends the watch, and so does DEADLINE_EXCEEDED after `timeout`
    seconds of one stream (None: follow for ever)."""
    pause = 0.5
    while True:
        try:
            request = exchange_pb2.WatchCasesRequest(after_sequence=after_sequence, purpose=purpose)
            for update in stub.WatchCases(request, timeout=timeout):
                handle(update)
                after_sequence = update.sequence
                pause = 0.5
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise
        time.sleep(pause)
        pause = min(pause * 2, 30)


if __name__ == "__main__":
    ch = channel("ic-north")
    health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    print("exchange:", health_pb2.HealthCheckResponse.ServingStatus.Name(health.status))
    cases = exchange_pb2_grpc.CasesServiceStub(ch)
    for item in cases.Inbox(exchange_pb2.InboxRequest(purpose="morning inbox"), timeout=10).items:
        print(exchange_pb2.InboxItem.Kind.Name(item.kind), item.case_id, item.from_agency,
              "due", item.due_at.ToJsonString() if item.HasField("due_at") else "-",
              "OVERDUE" if item.overdue else "")
        case = get_case(cases, item.case_id, "referral triage")
        if case is not None:
            print("  status", exchange_pb2.CaseStatus.Name(case.status), "holder", case.holder,
                  "version", case.version, "name", case.subject_details.full_name or "(not granted)")
    for case in list_cases(cases, "daily review"):
        print(case.case_id, exchange_pb2.CaseStatus.Name(case.status))
