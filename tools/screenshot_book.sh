#!/usr/bin/env bash
# Screenshots of the built book's pages in headless Chromium, to look at what a reader sees.
#   bash tools/screenshot_book.sh [HTML_ROOT=_build/html] [OUT=_build/screenshots] [PAGE_FILTER=.]
# WIDTHS (default "1280 420") are the window widths, in CSS pixels: a laptop and a phone; HEIGHT
# (default 2400) the window height, which is what the screenshot shows.
# Needs Debian's chromium (apt-get install -y chromium). Prints the PNGs it wrote, and for
# every page the number of images and of "Traceback" strings (expected: 0).
set -euo pipefail
root=${1:-_build/html}; out=${2:-_build/screenshots}; filter=${3:-.}
widths=${WIDTHS:-1280 420}; height=${HEIGHT:-2400}
mkdir -p "$out"
for f in $(cd "$root" && find book -name "*.html" | sort | grep -E "$filter"); do
  name=$(echo "${f%.html}" | tr / _)
  for w in $widths; do
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
      --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --hide-scrollbars \
      --screenshot="$out/$name-$w.png" --window-size="$w,$height" "file://$(realpath "$root/$f")" 2>/dev/null
  done
  echo "$f: $(grep -o '<img' "$root/$f" | wc -l) images, $(grep -c Traceback "$root/$f" || true) tracebacks -> $out/$name-{${widths// /,}}.png"
done
