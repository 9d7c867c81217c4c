"""Schemathesis hooks for infra/dev/api-contract-test: keep every request's consequences on this machine."""

import schemathesis


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
