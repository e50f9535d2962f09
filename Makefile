# Two commands do all set-up on a fresh Debian / Raspberry Pi OS machine:
#   make demo   run the whole stack: the central server and its broker, three boxes on simulated
#               hardware, and bulletins made through the API that play within a minute
#               (make demo-agent: the agent alone, with a local schedule)
#   make test   lint, type-check and run the test suite (which checks the output shown in the docs)
# Debian's own Python 3.11, as on the box, so that the tests run on the cryptography and PyJWT the
# box has: Debian's python3-cryptography (linked to the system's OpenSSL) and python3-jwt, seen
# through --system-site-packages (flash.sh does the same; docs/OPERATIONS.md says why).
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := python3-venv python3-dev python3-cryptography python3-jwt vlc-bin vlc-plugin-base libvlc5 mosquitto mosquitto-clients \
	rtl-sdr librtlsdr0 sox lame espeak-ng systemd shellcheck

.PHONY: test demo demo-agent lint typecheck imports pytest bench doc-examples system-deps clean

# the central server's store tests run on a real PostgreSQL (tests/postgres_server.py)
APT_PACKAGES += postgresql

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): setup.py pyproject.toml | system-deps
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -q

test: system-deps lint typecheck imports pytest

# Rewrite the output shown in docs/CONFIG.md and docs/SCHEDULING.md (tests/test_docs.py checks it).
doc-examples: $(STAMP)
	$(BIN)/python -m tests.doc_examples

# the whole stack as processes (demo/): loa-central serve with its Mosquitto, three loa-agent run
# (libVLC writing WAV), espeak-ng for the text bulletin; all in APT_PACKAGES and setup.py
demo: system-deps $(STAMP)
	$(BIN)/python -m demo

demo-agent: system-deps $(STAMP)
	$(BIN)/python -m agent.demo

bench: system-deps $(STAMP)
	$(BIN)/python -m bench.run_all

# the central server's browser tests drive Debian's chromium with Playwright (never `playwright install`)
APT_PACKAGES += chromium

clean:
	rm -rf $(VENV) build *.egg-info
