#!/bin/sh
# Which of the project's packages would pip build from source instead of taking a wheel? (Issue 10:
# the install must compile nothing.) Resolves the whole install, downloads nothing, installs nothing.
#   bench/wheels.sh            # prints the count and every package that is not a wheel
set -eu
report=$(mktemp)
.venv/bin/pip install --dry-run --ignore-installed --quiet --report "$report" -e '.[dev]' 2>/dev/null
.venv/bin/python - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
other = [(i["metadata"]["name"], i["download_info"]["url"].rsplit("/", 1)[-1]) for i in r["install"]
         if not i["download_info"]["url"].endswith(".whl")]
print(f"{len(r['install'])} packages; not wheels: {other}")
PY
rm -f "$report"
