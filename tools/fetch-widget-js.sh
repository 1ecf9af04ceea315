#!/usr/bin/env bash
# Fetch the browser-side JavaScript the static book needs, so that no page
# loads anything from a CDN:
#   - the ipywidgets embed manager (@jupyter-widgets/html-manager) + RequireJS,
#   - MathJax 3 (Sphinx would otherwise load it from jsDelivr).
#
#   bash tools/fetch-widget-js.sh            # idempotent; skips if up to date
#   FORCE=1 bash tools/fetch-widget-js.sh    # fetch again
#
# Pinned npm packages are downloaded with `npm pack`, checked against the
# integrity hashes below, and the files a browser needs are copied to
#   _widgets_js/widgets/   require.js, setup.js (written here), embed-amd.js + fonts
#   _widgets_js/mathjax/   tex-mml-chtml.js and the components it loads lazily
# _widgets_js/ is git-ignored; `html_extra_path` in _config.yml copies its
# contents to the root of the HTML output (<html>/widgets/, <html>/mathjax/).
# `nb_ipywidgets_js` and `mathjax_path` in _config.yml point the pages at them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${WIDGETS_JS_DIR:-$ROOT/_widgets_js}"

# --- pins ---------------------------------------------------------------------
# html-manager 1.0.x is the embed manager for ipywidgets 8 (it bundles
# @jupyter-widgets/base 6, controls 5, output 6, and the ipywidgets 7 versions).
# Bump a version and its integrity together:
#   npm view PACKAGE@VERSION dist.integrity
HTML_MANAGER_VERSION="1.0.15"
HTML_MANAGER_INTEGRITY="sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA=="
REQUIREJS_VERSION="2.3.8"
REQUIREJS_INTEGRITY="sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw=="
MATHJAX_VERSION="3.2.2"
MATHJAX_INTEGRITY="sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
# -------------------------------------------------------------------------------

STAMP_CONTENT="html-manager=$HTML_MANAGER_VERSION requirejs=$REQUIREJS_VERSION mathjax=$MATHJAX_VERSION layout=3"
STAMP="$OUT/widgets/VERSIONS"

die() { echo "fetch-widget-js: $*" >&2; exit 1; }

write_setup_js() {  # write_setup_js DIR
    # Runs between require.js and embed-amd.js. Each webpack bundle inside
    # embed-amd.js (html-manager, base, controls, ...) looks for its font files
    # relative to the URL that RequireJS gives its module id; by default that
    # is <page folder>/@jupyter-widgets/..., which does not exist. Map every
    # module id that embed-amd.js defines to embed-amd.js itself, so they all
    # find their assets next to it. (Nothing is fetched because of this: the
    # modules are defined as soon as embed-amd.js has run.)
    # __jupyter_widgets_assets_path__ is html-manager's own knob for the same.
    cat > "$1/setup.js" <<'EOF'
/* The CAM Book: configure the self-hosted Jupyter widgets manager. */
(function () {
  var me = document.currentScript;
  if (!me || !me.src) { return; }
  var dir = me.src.split(/[?#]/)[0].replace(/[^\/]*$/, "");
  window.__jupyter_widgets_assets_path__ = dir;
  if (typeof window.requirejs !== "function") { return; }
  var bundle = dir + "embed-amd", paths = {};
  ["@jupyter-widgets/base", "@jupyter-widgets/base7",
   "@jupyter-widgets/controls", "@jupyter-widgets/controls7",
   "@jupyter-widgets/html-manager",
   "@jupyter-widgets/html-manager/dist/libembed-amd"].forEach(function (id) {
    paths[id] = bundle;
  });
  window.requirejs.config({ paths: paths });
})();
/* The widgets typeset their labels with MathJax 2's MathJax.Hub.Queue(["Typeset", Hub, el]);
   the book loads MathJax 3, which has no Hub, so every labelled widget threw a TypeError.
   Give MathJax 3 that one entry point, translated to typesetPromise. It is added once the
   deferred MathJax script has run (before DOMContentLoaded, when the widgets render). */
(function () {
  function addHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || typeof mj.typesetPromise !== "function") { return; }
    mj.Hub = { Queue: function () {
      Array.prototype.forEach.call(arguments, function (job) {
        if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
          mj.typesetPromise([job[2]]).catch(function (e) { console.warn(e); });
        }
      });
    } };
  }
  addHub();
  document.addEventListener("DOMContentLoaded", addHub);
})();
EOF
}

if [[ "${FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" \
      && -s "$OUT/widgets/embed-amd.js" && -s "$OUT/widgets/require.js" \
      && -s "$OUT/mathjax/tex-mml-chtml.js" ]]; then
    write_setup_js "$OUT/widgets"
    echo "fetch-widget-js: up to date ($STAMP_CONTENT) in $OUT"
    exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is required (install Node.js >= 18)"
command -v node >/dev/null 2>&1 || die "node is required (install Node.js >= 18)"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

sri_sha512() {  # sha512 of a file in npm's integrity format
    node -e 'const c=require("crypto"),f=require("fs");
             process.stdout.write("sha512-"+c.createHash("sha512")
               .update(f.readFileSync(process.argv[1])).digest("base64"));' "$1"
}

fetch() {  # fetch NAME VERSION INTEGRITY -> prints the extracted package dir
    local name="$1" version="$2" expected="$3" dir tgz
    dir="$TMP/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')"
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "$name@$version" >/dev/null) \
        || die "npm pack $name@$version failed"
    tgz="$(ls "$dir"/*.tgz)" || die "no tarball for $name@$version"
    [[ "$(sri_sha512 "$tgz")" == "$expected" ]] \
        || die "integrity mismatch for $name@$version (update the pin deliberately)"
    tar -xzf "$tgz" -C "$dir"
    echo "$dir/package"
}

echo "fetch-widget-js: fetching @jupyter-widgets/html-manager@$HTML_MANAGER_VERSION," \
     "requirejs@$REQUIREJS_VERSION, mathjax@$MATHJAX_VERSION"
HM="$(fetch @jupyter-widgets/html-manager "$HTML_MANAGER_VERSION" "$HTML_MANAGER_INTEGRITY")"
RJ="$(fetch requirejs "$REQUIREJS_VERSION" "$REQUIREJS_INTEGRITY")"
MJ="$(fetch mathjax "$MATHJAX_VERSION" "$MATHJAX_INTEGRITY")"

[[ -s "$HM/dist/embed-amd.js" ]] || die "dist/embed-amd.js missing from html-manager"
[[ -s "$RJ/require.js" ]] || die "require.js missing from requirejs"
[[ -s "$MJ/es5/tex-mml-chtml.js" ]] || die "es5/tex-mml-chtml.js missing from mathjax"

NEW="$TMP/out"
mkdir -p "$NEW/widgets" "$NEW/mathjax"

# widgets/: embed-amd.js holds html-manager, base, controls and output as named
# AMD modules and renders every widget-state script on the page; the hashed
# files are the Font Awesome / icon assets its CSS refers to.
cp "$RJ/require.js" "$NEW/widgets/require.js"
cp "$HM/dist/embed-amd.js" "$NEW/widgets/embed-amd.js"
shopt -s nullglob
for f in "$HM"/dist/*.{woff,woff2,ttf,eot,svg}; do cp "$f" "$NEW/widgets/"; done
shopt -u nullglob
[[ -f "$HM/dist/embed.js.LICENSE.txt" ]] && cp "$HM/dist/embed.js.LICENSE.txt" "$NEW/widgets/THIRD-PARTY-LICENSES.txt"
write_setup_js "$NEW/widgets"

# mathjax/: the combined TeX+MathML/CHTML component and everything it may load
# on demand (TeX extensions, fonts, menu, accessibility), without the other
# ready-made combined components.
cp -r "$MJ/es5/." "$NEW/mathjax/"
find "$NEW/mathjax" -maxdepth 1 -type f -name '*.js' ! -name 'tex-mml-chtml.js' -delete
rm -rf "$NEW/mathjax/output/svg"
cp "$MJ/LICENSE" "$NEW/mathjax/LICENSE"

cat > "$NEW/widgets/README.txt" <<EOF
Fetched by tools/fetch-widget-js.sh from the npm registry; do not edit or commit.
  ../widgets/  @jupyter-widgets/html-manager@$HTML_MANAGER_VERSION (BSD-3-Clause, Jupyter Project)
               requirejs@$REQUIREJS_VERSION (MIT, jQuery Foundation and contributors)
  ../mathjax/  mathjax@$MATHJAX_VERSION (Apache-2.0, MathJax Consortium)
third-party/ (in this folder) is where the AMD bundle of a widget library other than
ipywidgets would go (<package>@<version>/dist/index.js): pages look there, never
on a CDN.
EOF
echo "$STAMP_CONTENT" > "$NEW/widgets/VERSIONS"

# Replace the old tree only once the new one is complete.
mkdir -p "$(dirname "$OUT")"
rm -rf "$OUT.old"
[[ -e "$OUT" ]] && mv "$OUT" "$OUT.old"
mv "$NEW" "$OUT"
rm -rf "$OUT.old"
echo "fetch-widget-js: installed into $OUT"
