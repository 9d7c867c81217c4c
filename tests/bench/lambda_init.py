#!/usr/bin/env python3
"""Lambda init benchmark: time from starting a function's binary to its first Runtime API poll.

    python3 tests/bench/lambda_init.py [--runs 20] BINARY...      # e.g. target/perf/chat

For each binary, `--runs` cold starts: a minimal Runtime API on loopback (as infra/dev/lambda-runtime
serves it), the process started with a deployed function's environment (the AWS backend's table,
bucket and queues, static credentials, an endpoint on a closed loopback port: building the clients
makes no call), and the time until its first `GET /2018-06-01/runtime/invocation/next` is the init.
The process is then killed. Prints p50, p90 and max per binary, in milliseconds. Standard library only.
"""

import argparse
import os
import statistics
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def one_start(binary):
    polled = threading.Event()
    at = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            if not polled.is_set():
                at["poll"] = time.monotonic()
                polled.set()
            # Never answer: the measurement ends at the first poll.
            polled.wait()
            time.sleep(5)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "kotoba-init-bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "KOTOBA_TABLE": "kotoba",
        "KOTOBA_BUCKET": "kotoba",
        "KOTOBA_TRAIN_QUEUE_URL": "http://127.0.0.1:9/123456789012/train",
        "KOTOBA_TRAIN_DLQ_URL": "http://127.0.0.1:9/123456789012/train-dlq",
        "KOTOBA_WEBHOOK_QUEUE_URL": "http://127.0.0.1:9/123456789012/webhooks",
        "KOTOBA_WEBHOOK_DLQ_URL": "http://127.0.0.1:9/123456789012/webhooks-dlq",
        "KOTOBA_ADMIN_KEY": "init-bench-admin-key",
        "KOTOBA_MAIL_FROM": "noreply@example.com",
        "RUST_LOG": "error",
    }
    started = time.monotonic()
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not polled.wait(30):
            process.kill()
            _, err = process.communicate()
            raise SystemExit(f"{binary} never polled: {err.decode(errors='replace')[-2000:]}")
        return (at["poll"] - started) * 1000.0
    finally:
        process.kill()
        process.wait()
        server.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    print("| binary | runs | p50 (ms) | p90 (ms) | max (ms) |")
    print("|---|---|---|---|---|")
    for binary in args.binaries:
        one_start(binary)  # warm the page cache: a deployed binary is read from a fresh disk, not measured
        times = sorted(one_start(binary) for _ in range(args.runs))
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"| {os.path.basename(binary)} | {len(times)} | {statistics.median(times):.1f} | "
              f"{p90:.1f} | {times[-1]:.1f} |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
