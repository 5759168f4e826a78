#!/usr/bin/env bash
# Install what the tests need and run every test: the README's test command,
# and exactly what CI runs (.ci/run calls this script).
#
#   bash scripts/test.sh                 # every tox environment
#   bash scripts/test.sh -e cucumber     # arguments go to `tox run`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian's PostgreSQL and Redis servers for the database tests. The tests start
# private servers from these binaries on loopback; without them those tests skip.
need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v openssl >/dev/null || need+=(openssl)  # certificates for the Share TLS tests
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null; then
    echo "installing ${need[*]} (apt-get)"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } \
      || echo "warning: could not install ${need[*]}; the tests that need them will be skipped"
  else
    echo "warning: no apt-get; tests needing ${need[*]} will be skipped"
  fi
fi

python3 -m pip install --quiet --disable-pip-version-check --upgrade 'tox>=4.11' 'tox-uv>=1.11'

# The newer Pythons pyenv has, for share312/share313 (tox skips an env whose interpreter is
# missing): their bin directories at the end of PATH, so `python3` stays what it was.
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[2-9]\.[0-9]+$' || true); do
    [ -x "$root/versions/$v/bin/python${v%.*}" ] && PATH="$PATH:$root/versions/$v/bin"
  done
  export PATH
fi

junit_dir=".tox/junit"
rm -rf "$junit_dir"
status=0
python3 -m tox run "$@" || status=$?

# One closing line over every pytest session tox ran.
python3 - "$junit_dir" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
totals = dict(tests=0, failures=0, errors=0, skipped=0)
for path in glob.glob(f"{sys.argv[1]}/*.xml"):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
failed = totals["failures"] + totals["errors"]
passed = totals["tests"] - failed - totals["skipped"]
print(f"all suites: {passed} passed, {failed} failed, {totals['skipped']} skipped")
PY
exit $status
