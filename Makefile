# Two commands: `make dev` runs Kotoba locally on embedded defaults; `make test` runs every test.
# Build output goes outside the checkout so repeated runs (and CI) are incremental.
CARGO_TARGET_DIR ?= $(HOME)/.cache/kotoba-target
export CARGO_TARGET_DIR

.PHONY: dev test lint fmt package fuzz

## Build and start the local runner on KOTOBA_LISTEN (default 127.0.0.1:3000), data under KOTOBA_DATA_DIR.
## The console app (functions/console/app) is bundled with npm and embedded by the console's build.rs.
dev:
	infra/dev/console-app
	cargo run -p local-runner --bin kotoba-local

## Lint the templates, check formatting and clippy, then run every test (AWS adapters on a moto server).
test:
	infra/dev/test

## The arm64 bootstrap of every Lambda function via `sam build` (tools from PyPI into .venv); see docs/deploy.md.
package:
	infra/dev/package

## Fuzz the parsers of untrusted bytes (HTML, robots.txt, sitemaps, charsets, Twilio media, index blobs,
## Stripe events and signatures) with cargo +nightly fuzz,
## KOTOBA_FUZZ_SECONDS (default 60) each. Installs cargo-fuzz; not part of `make test`.
fuzz:
	infra/dev/fuzz

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
