#!/bin/sh
# Renders tether's status page with headless Chromium and writes a PNG.
#
# Usage: scripts/status-page-screenshot.sh ADMIN_URL OUT.png [WIDTH,HEIGHT]
#   ADMIN_URL  the admin listener, e.g. http://127.0.0.1:9477/ (the page is GET /)
#   OUT.png    where to write the screenshot
#   WIDTH,HEIGHT  window size, default 1000,900
# Needs chromium (Debian: apt-get install chromium). Works offline: the page has no external
# assets, and Chromium's own background traffic is switched off.
set -eu
url="${1:?usage: $0 ADMIN_URL OUT.png [WIDTH,HEIGHT]}"
out="${2:?usage: $0 ADMIN_URL OUT.png [WIDTH,HEIGHT]}"
size="${3:-1000,900}"
browser=""
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
done
[ -n "$browser" ] || { echo "$0: no chromium found (apt-get install chromium)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$out")"
out_abs="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
rm -f "$out_abs"
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --screenshot="$out_abs" --window-size="$size" "$url" \
  >/dev/null 2>&1 || true
[ -s "$out_abs" ] || { echo "$0: $browser wrote no screenshot for $url" >&2; exit 1; }
echo "$out_abs"
