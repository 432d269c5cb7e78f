#!/usr/bin/env bash
# Rebuilds report/ from the result files in results/ (copied from the run's OUT) with
# `metarl report`; with --check, rebuilds it in a temporary directory instead and checks that
# every committed file of report/ comes out byte for byte the same. No test suite needed.
#
#   bash docs/results/lpo-cpu/regenerate.sh           # (re)write report/
#   bash docs/results/lpo-cpu/regenerate.sh --check   # exit 1 if a committed file differs
#
# The command it runs, from the repository root (the report names its inputs by these paths):
#   metarl report docs/results/lpo-cpu/results/breakout/*.eval.json \
#       docs/results/lpo-cpu/results/ppo.eval.json -o REPORT_DIR
# report/ keeps report.md, the figures (PNG and SVG) and the CSV tables and programs.json;
# index.html (the same figures again, as base64) and the JSON tables are left out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
here=docs/results/lpo-cpu
if [ -z "${METARL:-}" ]; then
    METARL=$(command -v metarl || echo .venv/bin/metarl)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$METARL" report "$here"/results/breakout/*.eval.json "$here"/results/ppo.eval.json \
    -o "$tmp/report" >/dev/null
if [ "${1:-}" = --check ]; then
    status=0 count=0
    for f in "$here"/report/*; do
        count=$((count + 1))
        if ! cmp -s "$f" "$tmp/report/$(basename "$f")"; then
            echo "differs: $f" >&2
            status=1
        fi
    done
    if [ "$status" = 0 ]; then
        echo "ok: the $count files of $here/report/ regenerate byte for byte from results/"
    fi
    exit "$status"
fi
rm -rf "${here:?}/report"
mkdir -p "$here/report"
(cd "$tmp/report" && cp report.md ./*.png ./*.svg ./*.csv programs.json "$OLDPWD/$here/report/")
echo "wrote $here/report/ ($(du -sh "$here/report" | cut -f1))"
