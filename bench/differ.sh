#!/usr/bin/env bash
# The differ benchmark: `livesplice diff` on SQLite's amalgamation (one 8 MB C file,
# Debian's sqlite3 source package) built before and after a one-line change
# (sqlite3-change.patch), with Debian's hardening flags and Debian's own feature
# defines plus -ffunction-sections -fdata-sections. Target: median under 0.5 s.
#
#   bench/differ.sh BUILD_DIR OUT.json
#
# Downloads and built objects are cached under ${XDG_CACHE_HOME:-$HOME/.cache}/livesplice/.
# BENCH_RUNS sets the number of timed runs (default 10).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "$1" && pwd)
out=$2
runs=${BENCH_RUNS:-10}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/livesplice/sqlite3
target_s=0.5
log() { echo "==> $*" >&2; }

# --- Debian's sqlite3 source -> the amalgamation ------------------------------------
enable_deb_src() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [[ -f $f ]] && grep -q '^Types: deb$' "$f"; then
    log "enabling deb-src entries in $f"
    sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
  fi
  apt-get update -qq
}

mkdir -p "$cache/download"
if ! compgen -G "$cache/download/sqlite3_*.dsc" >/dev/null; then
  log "downloading Debian's sqlite3 source package"
  if ! (cd "$cache/download" && apt-get source --download-only -qq sqlite3 >/dev/null 2>&1); then
    enable_deb_src
    (cd "$cache/download" && apt-get source --download-only -qq sqlite3 >/dev/null 2>&1) ||
      { echo "bench/differ: apt-get source sqlite3 failed" >&2; exit 1; }
  fi
fi
dsc=$(ls "$cache/download"/sqlite3_*.dsc | sort -V | tail -n 1)
version=$(basename "$dsc" .dsc); version=${version#sqlite3_}
amalg="$cache/amalgamation-$version"
if [[ ! -f "$amalg/sqlite3.c" ]]; then
  log "building the amalgamation of sqlite3 $version (configure; make sqlite3.c)"
  tmp=$(mktemp -d "$cache/extract.XXXXXX")
  dpkg-source -x "$dsc" "$tmp/src" >"$tmp/extract.log" 2>&1 ||
    { echo "bench/differ: dpkg-source -x failed; see $tmp/extract.log" >&2; exit 1; }
  (cd "$tmp/src" && ./configure --enable-threadsafe --enable-load-extension --enable-fts4 \
     --enable-fts5 >"$tmp/configure.log" 2>&1 && make sqlite3.c >"$tmp/make.log" 2>&1) ||
    { echo "bench/differ: building sqlite3.c failed; see $tmp" >&2; exit 1; }
  mkdir -p "$amalg"
  cp "$tmp/src/sqlite3.c" "$tmp/src/sqlite3.h" "$amalg/"
  rm -rf "$tmp"
fi

# --- pre.o and post.o ----------------------------------------------------------------
# Debian's flags (debian/rules: hardening=+all future=+lfs, its -D list), and what
# livesplice needs: one section per function and datum.
export DEB_BUILD_MAINT_OPTIONS="hardening=+all future=+lfs"
debian_defines="-fno-strict-aliasing -DSQLITE_SECURE_DELETE -DSQLITE_ENABLE_COLUMN_METADATA
  -DSQLITE_ENABLE_FTS3 -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_RTREE=1
  -DSQLITE_SOUNDEX=1 -DSQLITE_ENABLE_UNLOCK_NOTIFY -DSQLITE_OMIT_LOOKASIDE=1
  -DSQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_ALLOW_ROWID_IN_VIEW -DSQLITE_ENABLE_UPDATE_DELETE_LIMIT=1
  -DSQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_ENABLE_JSON1 -DSQLITE_LIKE_DOESNT_MATCH_BLOBS
  -DSQLITE_THREADSAFE=1 -DSQLITE_ENABLE_FTS3_TOKENIZER=1 -DSQLITE_USE_URI=1
  -DSQLITE_MAX_SCHEMA_RETRY=25 -DSQLITE_ENABLE_PREUPDATE_HOOK -DSQLITE_ENABLE_SESSION
  -DSQLITE_ENABLE_STMTVTAB -DSQLITE_MAX_VARIABLE_NUMBER=250000"
# -ffile-prefix-map maps the directory we compile in to '.', so pre and post differ only
# by the change.
cflags="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS | sed 's/-ffile-prefix-map=[^ ]*//')"
cflags="$(echo $cflags -ffunction-sections -fdata-sections -fPIC $debian_defines)"
gcc_version=$(gcc -dumpfullversion)
key=$( (echo "$version $gcc_version $cflags"; cat "$here/sqlite3-change.patch") | sha256sum | cut -c1-16)
objs="$cache/objects-$key"
if [[ ! -f "$objs/post.o" ]]; then
  log "compiling sqlite3.c before and after the change (two gcc runs in parallel, a few minutes)"
  tmp=$(mktemp -d "$cache/objects.XXXXXX")
  mkdir -p "$tmp/pre" "$tmp/post"
  cp "$amalg/sqlite3.c" "$amalg/sqlite3.h" "$tmp/pre/"
  cp "$amalg/sqlite3.c" "$amalg/sqlite3.h" "$tmp/post/"
  patch -s -d "$tmp/post" -p1 < "$here/sqlite3-change.patch"
  compile() {   # DIR -> DIR/sqlite3.o, seconds in DIR/seconds
    local t0 t1
    t0=$(date +%s.%N)
    (cd "$1" && gcc -c $cflags -ffile-prefix-map="$1"=. -o sqlite3.o sqlite3.c)
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }' > "$1/seconds"
  }
  compile "$tmp/pre" & pre_pid=$!
  compile "$tmp/post" & post_pid=$!
  wait $pre_pid && wait $post_pid
  mkdir -p "$objs"
  mv "$tmp/pre/sqlite3.o" "$objs/pre.o"
  mv "$tmp/pre/seconds" "$objs/pre.seconds"
  mv "$tmp/post/seconds" "$objs/post.seconds"
  mv "$tmp/post/sqlite3.o" "$objs/post.o"
  rm -rf "$tmp"
  compile_cached=false
else
  compile_cached=true
fi

# --- time the differ -----------------------------------------------------------------
log "timing: livesplice diff pre.o post.o ($runs runs)"
timing=$("$build/bench/bench-timeit" --runs "$runs" --warmup 1 --ok-exit 0,2,3 -- \
  "$build/livesplice" diff "$objs/pre.o" "$objs/post.o") || {
  echo "bench/differ: livesplice diff failed:" >&2
  "$build/livesplice" diff "$objs/pre.o" "$objs/post.o" >/dev/null || true
  exit 1
}
result_file=$(mktemp)
trap 'rm -f "$result_file"' EXIT
set +e
"$build/livesplice" diff --json "$objs/pre.o" "$objs/post.o" > "$result_file"
diff_rc=$?
set -e
# The full report lists every function of sqlite3.c; keep what changed.
digest=$(jq -c '{summary, changed: [.symbols[] | select(.status != "same") | {name, status, reason}],
                 unsafe: (.unsafe // [])}' "$result_file")

count_sections=$(readelf -hW "$objs/pre.o" | awk -F: '/Number of section headers/ {gsub(/ /,"",$2); print $2}')
count_symbols=$(readelf -sW "$objs/pre.o" | awk '/^Symbol table .\.symtab/ {print $5}')
jq -n \
  --arg version "$version" --arg cflags "$cflags" --arg gcc "$gcc_version" \
  --argjson pre_bytes "$(stat -c %s "$objs/pre.o")" --argjson post_bytes "$(stat -c %s "$objs/post.o")" \
  --argjson sections "$count_sections" --argjson symbols "$count_symbols" \
  --argjson pre_s "$(cat "$objs/pre.seconds")" --argjson post_s "$(cat "$objs/post.seconds")" \
  --argjson cached "$compile_cached" --argjson timing "$timing" \
  --argjson diff_rc "$diff_rc" --argjson result "$digest" --argjson target "$target_s" '{
  benchmark: "differ/sqlite3",
  what: "livesplice diff on the SQLite amalgamation built before and after a one-line change",
  sqlite_source: ("Debian sqlite3 " + $version),
  change: "bench/sqlite3-change.patch (sqlite3_busy_timeout: ms>0 -> ms>=0)",
  gcc: $gcc,
  cflags: $cflags,
  objects: {pre_bytes: $pre_bytes, post_bytes: $post_bytes, sections: $sections, symbols: $symbols},
  compile_s: {pre: $pre_s, post: $post_s, from_cache: $cached,
              note: "measured when the objects were built (in parallel on this machine)"},
  diff: $timing,
  diff_exit_code: $diff_rc,
  diff_summary: $result.summary,
  diff_changed: $result.changed,
  diff_unsafe: $result.unsafe,
  target: {median_s_below: $target, met: ($timing.median_s < $target)}
}' > "$out"
