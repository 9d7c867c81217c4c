"""Stripe for the API contract run: localstripe, plus the two hosted-page endpoints it lacks.

Usage: python stripe_front.py <port> <localstripe base URL>

POST /v1/checkout/sessions and /v1/billing_portal/sessions answer as Stripe does (the customer must
exist in localstripe, as Stripe requires); every other request is forwarded to localstripe unchanged.
Binds loopback only.
"""

import secrets
import sys

import aiohttp
from aiohttp import web

port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")


def stripe_error(status, code, message, param=None):
    error = {"type": "invalid_request_error", "code": code, "message": message}
    if param:
        error["param"] = param
    return web.json_response({"error": error}, status=status)


async def customer_exists(request, customer):
    async with request.app["client"].get(
        f"{upstream}/v1/customers/{customer}",
        headers={"Authorization": request.headers.get("Authorization", "")},
    ) as reply:
        return reply.status == 200


async def hosted(request, kind):
    form = await request.post()
    customer = form.get("customer", "")
    if not customer:
        return stripe_error(400, "parameter_missing", "Missing required param: customer.", "customer")
    if not await customer_exists(request, customer):
        return stripe_error(400, "resource_missing", f"No such customer: '{customer}'", "customer")
    if kind == "checkout":
        for name in ("success_url", "line_items[0][price]"):
            if not form.get(name):
                return stripe_error(400, "parameter_missing", f"Missing required param: {name}.", name)
        sid = f"cs_test_{secrets.token_hex(12)}"
        return web.json_response(
            {"id": sid, "object": "checkout.session", "customer": customer,
             "url": f"https://checkout.stripe.com/c/pay/{sid}"}
        )
    sid = f"bps_{secrets.token_hex(12)}"
    return web.json_response(
        {"id": sid, "object": "billing_portal.session", "customer": customer,
         "url": f"https://billing.stripe.com/p/session/{sid}"}
    )


async def checkout(request):
    return await hosted(request, "checkout")


async def portal(request):
    return await hosted(request, "portal")


async def forward(request):
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
    async with request.app["client"].request(
        request.method, f"{upstream}{request.path_qs}", data=body, headers=headers
    ) as reply:
        payload = await reply.read()
        return web.Response(
            status=reply.status, body=payload,
            headers={"Content-Type": reply.headers.get("Content-Type", "application/json")},
        )


async def client(app):
    app["client"] = aiohttp.ClientSession()
    yield
    await app["client"].close()


app = web.Application()
app.cleanup_ctx.append(client)
app.router.add_post("/v1/checkout/sessions", checkout)
app.router.add_post("/v1/billing_portal/sessions", portal)
app.router.add_route("*", "/{tail:.*}", forward)
web.run_app(app, host="127.0.0.1", port=port, print=None)
