"""Schemathesis hooks for infra/dev/api-contract-test: keep every request's consequences on this machine."""

import json
import os
import uuid
import zlib

import schemathesis
from schemathesis.core import NotSet


def _fetchable(url: str) -> bool:
    # Parsers drop ASCII whitespace and control characters inside URLs and ignore the scheme's case, so
    # compare without them: anything the runner could read as an http(s) URL counts.
    cleaned = "".join(c for c in url if ord(c) > 0x20).lower()
    return cleaned.startswith(("http:", "https:"))


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # POST /api/train/url resolves the host it is given and queues a crawl of it: generated URLs would
    # send DNS queries and crawls off the machine. Any http(s) URL is pointed at a closed loopback port
    # instead, so the handler's own checks and the queueing still run and the crawl fails at once.
    body = case.body
    if case.operation.path == "/api/train/url" and isinstance(body, dict):
        url = body.get("url")
        if isinstance(url, str) and _fetchable(url):
            body["url"] = "http://127.0.0.1:9/"


# The webhook's security scheme carries this placeholder (schemathesis.toml); a case that has it is
# signed the way Stripe signs, with the secret the runner was started with, so generated events get past
# the signature check and reach the event parser and the billing state machine. Cases without it (no
# auth, invalid auth) stay unsigned and must be refused.
SIGN_PLACEHOLDER = "sign-with-the-webhook-secret"
WEBHOOK_PATH = "/api/webhooks/stripe"
HANDLED_EVENTS = [
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
]


def _stripe_signature(body) -> str:
    import hashlib
    import hmac
    import time

    # What the transport sends for a JSON body: requests' `json=` spelling (json.dumps defaults).
    if isinstance(body, (bytes, bytearray)):
        payload = bytes(body)
    elif body is None:
        payload = b"null"
    elif isinstance(body, NotSet):
        payload = b""
    else:
        payload = json.dumps(body).encode("utf-8")
    secret = os.environ["KOTOBA_ST_WEBHOOK_SECRET"].encode("utf-8")
    timestamp = str(int(time.time()))
    digest = hmac.new(secret, timestamp.encode() + b"." + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@schemathesis.hook("before_call")
def address_events_to_the_tenant(ctx, case, **kwargs):
    # Generated events name no tenant Kotoba knows and rarely a type it acts on, so they would all end
    # as `ignored` or `no_tenant`. Half of them are addressed to a tenant of their own (metadata.tenant_id,
    # as Kotoba's Checkout sessions and subscriptions carry it; not the tenant whose key drives the other
    # operations, whose subscription they would change) with a handled type, so they reach the billing
    # state machine. Runs before signing.
    body = case.body
    if case.operation.path != WEBHOOK_PATH or not isinstance(body, dict):
        return
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return
    # Generated ids repeat (`evt_0`), and a repeated id is only ever a `duplicate`: each event its own.
    if isinstance(body.get("id"), str) and body["id"].startswith("evt_"):
        body["id"] = f"evt_{uuid.uuid4().hex}"
    pick = zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode())
    if pick % 2 == 0:
        obj = data["object"]
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict):
            metadata = obj["metadata"] = {}
        metadata["tenant_id"] = os.environ["KOTOBA_ST_EVENT_TENANT_ID"]
        if body.get("type") not in HANDLED_EVENTS:
            body["type"] = HANDLED_EVENTS[(pick // 2) % len(HANDLED_EVENTS)]


@schemathesis.hook("before_call")
def sign_stripe_events(ctx, case, **kwargs):
    if case.operation.path != WEBHOOK_PATH or not case.headers:
        return
    for name, value in list(case.headers.items()):
        if name.lower() == "stripe-signature" and value == SIGN_PLACEHOLDER:
            case.headers[name] = _stripe_signature(case.body)


@schemathesis.hook("before_call")
def come_from_the_sites_page(ctx, case, **kwargs):
    # The widget's routes answer only pages of the site's allowed domains: the contract site allows the
    # runner's own origin, so a request that names no Origin of its own comes from there.
    if not case.operation.path.startswith("/api/embed/"):
        return
    headers = case.headers if case.headers is not None else {}
    if not any(name.lower() == "origin" for name in headers):
        headers["Origin"] = os.environ["KOTOBA_ST_ORIGIN"]
        case.headers = headers
