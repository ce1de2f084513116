"""Publish envelopes as one agency and wait for the exchange's receipts."""
import asyncio
import os
import time
from collections.abc import Iterable

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck

from handoff.v1 import events_pb2, exchange_pb2

RECEIPTS_STREAM = "HANDOFF_RECEIPTS"
Status = exchange_pb2.Receipt.Status


def traceparent() -> str:
    """A fresh W3C trace context (one per record, kept across its retries)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


class Publisher:
    """One agency's NATS connection with its receipts consumer."""

    def __init__(self, nc: nats.NATS, agency: str):
        self.nc, self.js, self.agency = nc, nc.jetstream(), agency
        self.receipts = None

    @classmethod
    async def connect(cls, url: str, agency: str, seed_file: str) -> "Publisher":
        nc = await nats.connect(
            url,
            nkeys_seed=seed_file,                 # <agency>.nk from `handoff nats-auth`
            inbox_prefix=f"_INBOX_{agency}",      # the only inboxes the agency may subscribe to
            name=f"{agency}-integration",
        )
        self = cls(nc, agency)
        # Before publishing: a no-ack pull consumer on our own receipts subject, created
        # with $JS.API.CONSUMER.CREATE.HANDOFF_RECEIPTS.<name>.handoff.receipts.<agency>.
        # The stream is named explicitly: looking it up by subject is not permitted.
        self.receipts = await self.js.pull_subscribe(
            f"handoff.receipts.{agency}",
            stream=RECEIPTS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.NEW,
                inactive_threshold=60.0,
                mem_storage=True,
            ),
        )
        return self

    async def close(self) -> None:
        await self.nc.close()

    async def lookup(self, event_id: str) -> exchange_pb2.Receipt | None:
        """The exchange's answer for one of our event ids; None = unknown or no answer."""
        try:
            reply = await self.nc.request(f"handoff.lookup.{self.agency}", event_id.encode(), timeout=5)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return None
        if not reply.data:
            return None
        return exchange_pb2.Receipt.FromString(reply.data)

    async def publish(self, envelope: events_pb2.Envelope, trace: str | None = None,
                      give_up_after: float = 60.0) -> PubAck:
        """Publishes one sealed envelope until the broker has it; returns the PubAck.
        Retries while there is no PubAck; a refusal by the broker (nats.js.errors.APIError,
        e.g. "maximum messages exceeded": nothing stored) is raised, to publish again later."""
        subject = f"handoff.events.{self.agency}.{envelope.WhichOneof('event')}"
        headers = {"Nats-Msg-Id": envelope.event_id, "traceparent": trace or traceparent()}
        body = envelope.SerializeToString()
        started, pause = time.monotonic(), 0.1
        while True:
            try:
                return await self.js.publish(subject, body, timeout=5, headers=headers)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                    nats.js.errors.NoStreamResponseError, nats.errors.ConnectionClosedError):
                if time.monotonic() - started > give_up_after:
                    raise
                await asyncio.sleep(pause)        # same message, same Nats-Msg-Id: safe
                pause = min(pause * 2, 2.0)

    async def publish_and_wait(self, envelopes: Iterable[events_pb2.Envelope],
                               timeout: float = 30.0) -> dict[str, exchange_pb2.Receipt]:
        """Publishes every envelope, then waits for a receipt for each: event id -> Receipt.
        Ids missing from the result got no answer in time (publish them again later)."""
        waiting = {}
        for env in envelopes:
            ack = await self.publish(env)
            waiting[env.event_id] = ack.duplicate   # broker duplicate: no live receipt comes
        got, started, last_lookup = {}, time.monotonic(), 0.0
        while waiting and time.monotonic() - started < timeout:
            try:
                for msg in await self.receipts.fetch(batch=64, timeout=0.5):
                    # One message holds our receipts of one committed batch.
                    for r in exchange_pb2.Receipts.FromString(msg.data).receipts:
                        if r.event_id in waiting:
                            got[r.event_id] = r
                            del waiting[r.event_id]
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                pass
            if time.monotonic() - last_lookup >= 0.5:
                last_lookup = time.monotonic()
                for event_id, broker_dup in list(waiting.items()):
                    if broker_dup or time.monotonic() - started > 2.0:
                        r = await self.lookup(event_id)
                        if r is not None:
                            got[event_id] = r
                            del waiting[event_id]
        return got


def delivered(r: exchange_pb2.Receipt) -> bool:
    """Accepted or duplicate: the event is in the log."""
    return r.status in (Status.STATUS_ACCEPTED, Status.STATUS_DUPLICATE)
