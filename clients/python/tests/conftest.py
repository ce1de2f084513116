"""The deployment the end-to-end tests run against, as tests/tests/python_client.rs
(run by `cargo test`) describes it in HANDOFF_E2E_* variables."""
import asyncio
import json
import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Deployment:
    """Addresses and credentials, laid out as the operators hand them out (section 1)."""

    nats_url: str          # nats://127.0.0.1:<port>
    grpc_target: str       # localhost:<port>
    certs: str             # ca.pem, <agency>.pem, <agency>.key
    nats_auth: str         # <agency>.nk
    secrets: str           # <agency>.secret (made at the agency)
    transport_key: str     # the file `handoff key show --transport` printed
    signing_key: str       # 64 hex digits, `handoff key show`
    out: pathlib.Path      # where to leave the export for the Rust side
    rust_ids: dict         # ids the Rust adapters derive, to compare with handoff_ids

    def seed(self, agency: str) -> str:
        return f"{self.nats_auth}/{agency}.nk"

    def secret_file(self, agency: str) -> str:
        return f"{self.secrets}/{agency}.secret"


@pytest.fixture(scope="session")
def deployment() -> Deployment:
    env = os.environ
    if "HANDOFF_E2E_NATS_URL" not in env:
        pytest.skip("needs a running exchange: run it with `cargo test --test python_client`")
    return Deployment(
        nats_url=env["HANDOFF_E2E_NATS_URL"],
        grpc_target=env["HANDOFF_E2E_GRPC"],
        certs=env["HANDOFF_E2E_CERTS"],
        nats_auth=env["HANDOFF_E2E_NATS_AUTH"],
        secrets=env["HANDOFF_E2E_SECRETS"],
        transport_key=env["HANDOFF_E2E_TRANSPORT_KEY"],
        signing_key=env["HANDOFF_E2E_SIGNING_KEY"],
        out=pathlib.Path(env["HANDOFF_E2E_OUT"]),
        rust_ids=json.loads(env["HANDOFF_E2E_RUST_IDS"]),
    )


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the session, so NATS connections outlive a single test."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
