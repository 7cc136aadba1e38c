#!/usr/bin/env bash
# Installs pymesos 0.3.15 (a third-party Mesos client library; the pymesos
# end-to-end test drives a framework and an executor with it) into a
# virtualenv: `bash tests/python/install_pymesos.sh [VENV]`, VENV defaulting
# to target/spark-venv. Does nothing when that pymesos is already there.
#
# pymesos parses HTTP with http-parser 0.9.0, whose sdist carries C that an
# old Cython generated and that no longer compiles for Python 3.11
# (longintrepr.h moved). The package falls back to its pure-Python parser
# when the extension is absent, and pymesos supports that parser, so
# http-parser is built here without the extension (its setup.py has no
# switch for it: the one call that asks for the extension is edited).
# pip's caches still apply: the sdist download and pymesos' wheel.
set -euo pipefail

venv=${1:-target/spark-venv}
python="$venv/bin/python"
if [[ ! -x "$python" ]]; then
  echo "no virtualenv at $venv (create it first: python3 -m venv $venv)" >&2
  exit 1
fi
if "$python" -c 'import sys, pymesos; sys.exit(pymesos.__VERSION__ != "0.3.15")' 2>/dev/null; then
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary :all: --dest "$work" http-parser==0.9.0
tar -xzf "$work/http-parser-0.9.0.tar.gz" -C "$work"
setup="$work/http-parser-0.9.0/setup.py"
if ! grep -q '^    run_setup(not IS_PYPY)$' "$setup"; then
  echo "http-parser's setup.py is not the one this script knows how to build without C" >&2
  exit 1
fi
sed -i 's/^    run_setup(not IS_PYPY)$/    run_setup(False)/' "$setup"
"$python" -m pip install --quiet "$work/http-parser-0.9.0" pymesos==0.3.15
"$python" -c 'import pymesos, http_parser.http; print("pymesos", pymesos.__VERSION__, "installed")'
