# The two commands of the README: `make run` and `make test`.
# Each creates/refreshes .venv itself; `make test` also installs the real
# DICOM tools the interop tests drive (Debian's dcmtk, orthanc and its
# DICOMweb plugin orthanc-dicomweb), the
# database servers they start (postgresql, mariadb-server), the browser
# that loads the web pages (chromium) and Apache's htpasswd that makes the
# web logins (apache2-utils) when they are missing.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export TCP_NODELAY := 1

.PHONY: run test system-deps bench clean

$(VENV)/.installed: setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,postgresql,mysql]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/twistd -n pacs

# The tests run their own PostgreSQL and MariaDB servers (tests/dbservers.py)
# from Debian's postgresql and mariadb-server packages.
# Debian's orthanc package enables and starts a system Orthanc (ports 4242
# and 8042) where an init system runs; the tests run their own on free
# ports without systemd, so the one the install starts is stopped again.
system-deps:
	@command -v storescu >/dev/null && command -v echoscu >/dev/null || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk )
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql )
	@command -v chromium >/dev/null || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium )
	@command -v htpasswd >/dev/null || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2-utils )
	@[ -x /usr/sbin/mariadbd ] || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server )
	@[ -x /usr/sbin/Orthanc ] && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || \
	  ( $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb && \
	    if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now -q orthanc.service; \
	    elif [ -e /run/orthanc.pid ]; then $(SUDO) /etc/init.d/orthanc stop >/dev/null; fi )

# The tests run in parallel (pytest-xdist), four workers (two on one core):
# most of their time is spent waiting for servers, tools and timeouts, so
# four workers on two cores take about two thirds of the time of two.
# `make test TEST_WORKERS=n` sets another number.
TEST_WORKERS ?= $(shell [ "$$(nproc)" -ge 2 ] && echo 4 || echo 2)
test: $(VENV)/.installed system-deps
	$(PY) -m pytest -q --numprocesses=$(TEST_WORKERS) tests

bench: $(VENV)/.installed system-deps
	$(PY) bench/ingest.py
	$(PY) bench/queryretrieve.py
	$(PY) bench/worklist.py
	$(PY) bench/converters.py
	$(PY) bench/dicomweb.py

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp* .pytest_cache
