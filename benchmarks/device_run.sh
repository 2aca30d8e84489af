#!/usr/bin/env bash
# Every GPU row of the benchmark documentation in one command (benchmarks/device_run.py says which).
#
#   benchmarks/device_run.sh                 # on a GPU machine: < 8 min on one H100, no downloads
#   benchmarks/device_run.sh --dry-run       # the same code on the CPU with tiny sizes (CI)
#   benchmarks/device_run.sh --out DIR       # rows.json + cuda_tests.xml in DIR
#
# Results go to --out, else $OUT (set on a lent device machine: what is written there comes
# back), else benchmarks/results/device_run/. The run ends with the rows as a table; its exit
# status is non-zero when a row failed.
#
# Python: $PYTHON, else python3, must import eoid's dependencies. A machine whose python has
# torch but not eoid's other packages (the lent GPU machines have torch, no open_clip or zarr,
# and no internet) gets them from wheels in .whl/ at the repository root: make them once on a
# machine with internet with benchmarks/device_wheels.sh and carry .whl along. They are
# installed into a temporary folder, never into the machine's own environment.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT_DIR="${OUT:-$ROOT/benchmarks/results/device_run}"
DRY=()
LIMIT=470        # seconds: the whole run stays under 8 minutes, set-up included
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=(--dry-run); shift ;;
        --out) OUT_DIR="$2"; shift 2 ;;
        --limit) LIMIT="$2"; shift 2 ;;
        *) echo "device_run.sh: unknown argument $1 (use --dry-run, --out DIR, --limit SECONDS)" >&2; exit 2 ;;
    esac
done

PY="${PYTHON:-python3}"
# found, not imported (importing open_clip alone takes seconds)
NEEDED="import importlib.util as u, sys
missing = [m for m in ('torch', 'torchvision', 'open_clip', 'zarr', 'numcodecs', 'ftfy', 'scipy', 'click',
                       'PIL', 'tqdm', 'matplotlib', 'pytest') if u.find_spec(m) is None]
sys.exit('missing: ' + ' '.join(missing) if missing else 0)"
if ! "$PY" -c "$NEEDED" >/dev/null 2>&1; then
    if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
        SITE="$(mktemp -d /tmp/eoid-site.XXXXXX)"
        echo "device_run: installing $(ls "$ROOT"/.whl/*.whl | wc -l) carried wheels into $SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
            "$ROOT"/.whl/*.whl
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    fi
    if ! "$PY" -c "$NEEDED"; then
        echo "device_run: $PY cannot import eoid's dependencies (above) and no .whl/ fixes it:" \
             "run benchmarks/device_wheels.sh where pip reaches the registry and carry .whl" >&2
        exit 2
    fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1

mkdir -p "$OUT_DIR"
set +e
timeout --kill-after=10 "$LIMIT" "$PY" "$ROOT/benchmarks/device_run.py" --out "$OUT_DIR" "${DRY[@]}" \
    2>&1 | tee "$OUT_DIR/device_run.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "device_run: stopped at its ${LIMIT} s limit; the rows finished so far are in $OUT_DIR/rows.json" >&2
fi
exit "$status"
