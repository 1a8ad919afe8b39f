# Sourced by build.sh and test.sh: the compiler cache for their builds, when ccache is installed
# (scripts/deps.sh installs it). The suite builds the code twice from scratch (build/ and
# build-asan/); with the cache, a run on a machine that has built this code before compiles only
# the sources that changed. ccache gives back exactly what the compiler would make (warnings
# included), and never caches a failed compilation.
#   LEAKGUARD_CCACHE=0  build without it.
# Sets ccache_args: the cmake configure arguments (which clear the launcher without the cache).
ccache_args=(-DCMAKE_CXX_COMPILER_LAUNCHER=)
if [ "${LEAKGUARD_CCACHE:-1}" != 0 ] && command -v ccache >/dev/null 2>&1; then
  ccache_args=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  # Paths under the clone are hashed relative to it, so another clone of the same code (a fresh
  # clone, as CI makes) finds the objects this one made. With debug information on, ccache would
  # also hash the build directory itself (where the debugger looks for sources); it is not
  # hashed, so an object's debug information may name the clone that compiled it first (the .deb
  # is stripped; nothing else reads it).
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(pwd -P)}
  export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
fi
# ccache_build DIR ARGS...: cmake --build DIR ARGS..., then one line saying how many of its
# compilations came from the cache (this build's own, logged in DIR/ccache-stats.log).
ccache_build() {
  local dir=$1 log=""
  shift
  if [ "${ccache_args[0]}" = -DCMAKE_CXX_COMPILER_LAUNCHER=ccache ]; then
    log=$(pwd -P)/$dir/ccache-stats.log
    : >"$log"
  fi
  CCACHE_STATSLOG=$log cmake --build "$dir" "$@"
  [ -n "$log" ] || return 0
  echo "ccache: $(grep -cE '^(direct|preprocessed)_cache_hit$' "$log") compilations from the cache," \
       "$(grep -cx cache_miss "$log") compiled ($(ccache -k cache_dir))"
}
