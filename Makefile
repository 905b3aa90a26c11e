# Thin entry points; the logic lives in the ceremony-os binary and its crates.
# Run as root on Debian 12 (apt-get installs the host dependencies).

RUST_VERSION := 1.95.0
CARGO        ?= cargo
DEFINITION   ?= image/ceremony.toml
CEREMONY_OS  := target/release/ceremony-os
OUT          ?= out

# Host tools: apt resolution and bootstrapping (mmdebstrap, apt, keyring), .deb building for tests
# (dpkg-dev), and the oracles and real components the tests run.
HOST_PACKAGES := \
	cpio diffoscope-minimal qemu-system-x86 ovmf \
	apt ca-certificates debian-archive-keyring dpkg-dev mmdebstrap \
	xorriso squashfs-tools mtools dosfstools nix-bin faketime \
	softhsm2 opensc openssl libengine-pkcs11-openssl gpg gpg-agent python3-venv openssh-client

# Oracles from PyPI, pinned by hash (tests/oracles/requirements.txt), in a venv under target/.
PYVENV := target/pyvenv

.PHONY: setup toolchain pyvenv build iso test bench

## setup: install the host packages (needs root and the Debian archive)
setup: toolchain
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(HOST_PACKAGES)
	$(MAKE) pyvenv

pyvenv: $(PYVENV)/.installed
$(PYVENV)/.installed: tests/oracles/requirements.txt
	/usr/bin/python3 -m venv $(PYVENV)
	$(PYVENV)/bin/pip install --quiet --require-hashes --only-binary :all: -r tests/oracles/requirements.txt
	touch $@

# rust-toolchain.toml pins $(RUST_VERSION); when the installed stable toolchain is that version,
# register it under its number so rustup never tries to download it.
toolchain:
	@if ! rustup toolchain list | grep -q '^$(RUST_VERSION)-'; then \
	  if rustc +stable --version | grep -q '^rustc $(RUST_VERSION) '; then \
	    rustup toolchain link $(RUST_VERSION)-x86_64-unknown-linux-gnu "$$(rustc +stable --print sysroot)"; \
	  else echo "rustc $(RUST_VERSION) is required (see rust-toolchain.toml)" >&2; exit 1; fi; \
	fi

build: toolchain
	$(CARGO) build --release --locked -p ceremony-os -p ceremony-tools

## iso: the main job: fetch every locked input (verified) and build out/<name>-<version>-amd64.iso;
## when the committed lock's inputs can no longer be had, today's state is locked into out/ and built
iso: build
	$(CEREMONY_OS) build $(DEFINITION) --output $(OUT) --allow-relock

## test: the whole test suite (needs root and the Debian archive)
test: setup
	$(CARGO) test --workspace --locked --no-fail-fast

## bench: build times beside the plain shell pipeline, a witness's time from a fresh clone with
## inputs from a bundle, boot times, and the squashfs compression
## table, then one table of every figure with its target and ratio (reports, never asserts)
bench: build
	mkdir -p out && rm -f out/bench.tsv
	BENCH_TABLE=out/bench.tsv tests/bench/build.sh
	$(CEREMONY_OS) build $(DEFINITION) --output out --json > out/build-report.json
	BENCH_TABLE=out/bench.tsv tests/bench/witness.sh out/ceremony-os.manifest.json
	iso=$$(/usr/bin/python3 -c 'import json; print(json.load(open("out/build-report.json"))["iso"])') && \
	  BENCH_TABLE=out/bench.tsv tests/bench/boot.sh "$$iso" && \
	  tests/bench/compression.sh out/build-report.json "$$iso"
	@echo; /usr/bin/python3 tests/bench/table.py out/bench.tsv
