#!/usr/bin/env bash
# Install the documentation tools and serve (or build) the site: one command,
# nothing to install by hand.
#
#   bash scripts/docs.sh                 # serve on http://127.0.0.1:8000, rebuilds on save
#   bash scripts/docs.sh --build         # build once into site/ (warnings are errors)
#   bash scripts/docs.sh -a 0.0.0.0:8000 # other arguments go to `mkdocs serve`
#
# The tools live in their own venv (build/docs-venv, or $SK_DOCS_VENV), created
# from the pinned docs/requirements.txt and refreshed when that file changes.
# NO_MKDOCS_2_WARNING=1 keeps mkdocs-material's "MkDocs 2" banner out of the
# output, as the tox `docs` environment does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv="${SK_DOCS_VENV:-build/docs-venv}"
requirements="docs/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [ ! -x "$venv/bin/mkdocs" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the documentation tools into $venv (from $requirements)"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi

export NO_MKDOCS_2_WARNING=1
if [ "${1:-}" = "--build" ]; then
  shift
  exec "$venv/bin/mkdocs" build --strict "$@"
fi
exec "$venv/bin/mkdocs" serve "$@"
