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
    url="file://$(realpath "$root/$f")"; win=$w
    if [ "$w" -lt 500 ]; then  # headless Chromium's window is at least 500 px: narrower pages go in a frame
      host=$(mktemp --suffix=.html); win=500
      echo "<html><body style=\"margin:0\"><iframe src=\"$url\" style=\"border:0;width:${w}px;height:${height}px\"></iframe></body></html>" > "$host"
      url="file://$host"
    fi
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
      --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --hide-scrollbars --allow-file-access-from-files \
      --virtual-time-budget=10000 --screenshot="$out/$name-$w.png" --window-size="$win,$height" "$url" 2>/dev/null
    if [ "$w" -lt 500 ]; then rm -f "$host"; fi
  done
  echo "$f: $(grep -o '<img' "$root/$f" | wc -l) images, $(grep -c Traceback "$root/$f" || true) tracebacks -> $out/$name-{${widths// /,}}.png"
done
