#!/usr/bin/env bash
# Rebuild the console's vendored map library (OpenLayers) from npm. Build time only: the result is
# committed under src/casemate/console/static/vendor/, so installing Casemate needs no npm and the
# console fetches nothing at run time. Needs node >= 18 and a reachable npm registry.
set -euo pipefail
here="$(cd "$(dirname "$0")/console-assets" && pwd)"
out="$(cd "$here/../.." && pwd)/src/casemate/console/static/vendor"
mkdir -p "$out"
cd "$here"
[ -d node_modules/ol ] || npm install --no-audit --no-fund --ignore-scripts=false
node_modules/.bin/esbuild entry.js --bundle --minify --format=iife --target=es2020 --legal-comments=none \
  --outfile="$out/ol.js"
cp node_modules/ol/ol.css "$out/ol.css"
cp node_modules/ol/LICENSE.md "$out/LICENSE-ol.md"
# rbush, earcut etc. ship inside the bundle: keep their licences beside it
for dep in rbush quickselect earcut color-rgba color-parse color-name color-space pbf ieee754 rbush; do
  for f in node_modules/$dep/LICENSE*; do [ -f "$f" ] && cp "$f" "$out/LICENSE-$dep" || true; done
done
echo "ol $(node -p "require('./node_modules/ol/package.json').version") -> $out/ol.js ($(wc -c < "$out/ol.js") bytes)"
