#!/usr/bin/env bash
# Third-party conformance check (issue 8's Proof): python-quickbooks and intuit-oauth, installed
# from PyPI into a throwaway virtualenv and changed only where they name Intuit's hosts, must
# see exactly the records `qbo sandbox` holds (see scripts/conformance.py). Needs python3 with
# venv and access to PyPI; takes well under a minute once qbo is built.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_QUICKBOOKS_VERSION=0.9.12
INTUIT_OAUTH_VERSION=1.2.6

cargo build --locked --quiet --bin qbo
venv=$(mktemp -d "${TMPDIR:-/tmp}/qbo-conformance.XXXXXX")
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "python-quickbooks==$PYTHON_QUICKBOOKS_VERSION" "intuit-oauth==$INTUIT_OAUTH_VERSION"
# python-quickbooks warns (DeprecationWarning) about minor versions it is given; not ours.
"$venv/bin/python" -W ignore::DeprecationWarning scripts/conformance.py target/debug/qbo
