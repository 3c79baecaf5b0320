#!/usr/bin/env bash
# Provision the vdrill local test bed into ${VDRILL_CACHE:-$HOME/.cache/vdrill}.
#
#   ci/testbed/setup.sh                 # all components
#   ci/testbed/setup.sh velero etcd     # only some: kube etcd velero localstack azurite lowkey-vault
#
# Idempotent: each component/version lives in its own directory with a stamp
# file; present ones are skipped. Writes $VDRILL_CACHE/testbed.json at the end
# (always describing everything present in the cache for the pinned versions).
# Needs: go, jq, curl, python 3.13, node/npm, mvn, Java 25. Registries only.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE=${VDRILL_CACHE:-$HOME/.cache/vdrill}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

ALL_COMPONENTS="kube etcd velero localstack azurite lowkey-vault"
export CGO_ENABLED=0
# Velero's kopia fork (github.com/project-velero/kopia) has pseudo-versions that the
# checksum database does not know (404), e.g. the one velero v1.17.2 replaces kopia with.
# They still come from the Go module proxy; only the sumdb lookup is skipped for them.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/project-velero"
export GOFLAGS="-buildvcs=false"
GO_LDFLAGS_BASE="-s -w"

T_START=$(date +%s)
SUMMARY_FILE=$(mktemp)
cleanup() {
  rm -f "$SUMMARY_FILE"
  # The owner file describes this run only while it holds the lock.
  if [[ -f ${OWNER_FILE:-} ]] && grep -qx "pid=$$" "$OWNER_FILE"; then rm -f "$OWNER_FILE"; fi
}
trap cleanup EXIT
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
report() { printf '%-24s %s\n' "$1" "$2" >>"$SUMMARY_FILE"; log "$1: $2"; }
now() { date +%s; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

need() {
  local missing=() c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  ((${#missing[@]} == 0)) && return 0
  log "missing tools: ${missing[*]}"
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    local pkgs=()
    for c in "${missing[@]}"; do
      case $c in mvn) pkgs+=(maven) ;; npm) pkgs+=(npm) ;; flock) pkgs+=(util-linux) ;; *) pkgs+=("$c") ;; esac
    done
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
  else
    log "install them first"; exit 1
  fi
}

# --- Go helpers ---------------------------------------------------------------

# go_mod_file MODULE@VERSION -> path of the downloaded go.mod (downloads it).
go_mod_file() {
  local out err gomod
  out=$(cd "$1" && go mod download -json "$2" 2>/dev/null) || true
  err=$(jq -r '.Error // empty' <<<"$out" 2>/dev/null || echo "$out")
  gomod=$(jq -r '.GoMod // empty' <<<"$out" 2>/dev/null || true)
  if [[ -n $err || -z $gomod ]]; then
    printf '%s' "${err:-$out}" | head -c 400 >&2
    return 1
  fi
  printf '%s\n' "$gomod"
}

# new_go_module DIR NAME: fresh go.mod in DIR.
new_go_module() {
  rm -rf "$1"; mkdir -p "$1"
  printf 'module %s\n\ngo 1.24.0\n' "$2" >"$1/go.mod"
}

# copy_replaces DIR UPSTREAM_GOMOD: repeat every non-local replace of upstream.
copy_replaces() {
  local r
  while IFS= read -r r; do
    [[ -n $r ]] && (cd "$1" && go mod edit -replace="$r")
  done < <(go mod edit -json "$2" | jq -r '.Replace // [] | .[]
      | select(.New.Version != null)
      | "\(.Old.Path)\(if .Old.Version then "@"+.Old.Version else "" end)=\(.New.Path)@\(.New.Version)"')
}

# apply_go_replaces DIR: module versions the Go proxy refuses, mapped to served
# ones (GO_REPLACES in versions.env).
apply_go_replaces() {
  local r
  for r in ${GO_REPLACES:-}; do (cd "$1" && go mod edit -replace="$r"); done
}

# --- kube -----------------------------------------------------------------------

kube_dir() { echo "$CACHE/kubernetes/$KUBE_VERSION"; }
do_kube() {
  local d; d=$(kube_dir)
  if [[ -f $d/.ok && -x $d/bin/kube-apiserver && -x $d/bin/kube-controller-manager ]]; then
    report "kube $KUBE_VERSION" cached; return
  fi
  local t0; t0=$(now)
  local src=$d/src
  new_go_module "$src" vdrill.local/testbed/kube
  local gomod
  gomod=$(go_mod_file "$src" "k8s.io/kubernetes@$KUBE_VERSION")
  # staging modules: k8s.io/X => ./staging/src/k8s.io/X  ->  k8s.io/X@v0.<minor>.<patch>
  local staging="v0.${KUBE_VERSION#v1.}" m
  for m in $(go mod edit -json "$gomod" | jq -r '.Replace[] | select(.New.Path | startswith("./staging/")) | .Old.Path'); do
    (cd "$src" && go mod edit -replace="$m=$m@$staging")
  done
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  (cd "$src" && go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION" &&
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION")
  local ld="$GO_LDFLAGS_BASE -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ld+=" -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
  local tmp=$d/bin.tmp.$$ b
  rm -rf "$tmp"; mkdir -p "$tmp" "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
  for b in kube-apiserver kube-controller-manager; do mv -f "$tmp/$b" "$d/bin/$b"; done
  rmdir "$tmp"; touch "$d/.ok"
  report "kube $KUBE_VERSION" "built in $(($(now) - t0))s"
}

# --- etcd -----------------------------------------------------------------------

etcd_dir() { echo "$CACHE/etcd/$ETCD_VERSION"; }
do_etcd() {
  local d; d=$(etcd_dir)
  if [[ -f $d/.ok && -x $d/bin/etcd ]]; then report "etcd $ETCD_VERSION" cached; return; fi
  local t0; t0=$(now)
  local src=$d/src
  new_go_module "$src" vdrill.local/testbed/etcd
  # go.etcd.io/etcd/server/v3 has a main package at its root calling etcdmain.Main(os.Args).
  (cd "$src" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$GO_LDFLAGS_BASE" -o "$d/bin/etcd.tmp.$$" go.etcd.io/etcd/server/v3)
  mv -f "$d/bin/etcd.tmp.$$" "$d/bin/etcd"; touch "$d/.ok"
  report "etcd $ETCD_VERSION" "built in $(($(now) - t0))s"
}

# --- velero + plugins -------------------------------------------------------------

velero_dir() { echo "$CACHE/velero/$1"; }
plugin_module() {
  case $1 in
    aws) echo github.com/vmware-tanzu/velero-plugin-for-aws ;;
    azure) echo github.com/vmware-tanzu/velero-plugin-for-microsoft-azure ;;
    *) return 1 ;;
  esac
}
plugin_dir() { echo "$CACHE/velero-plugins/$1/$2"; }

# Link-time settings of the Velero server. controller-runtime's manager serves its
# metrics on DefaultBindAddress (":8080", all interfaces) and Velero has no flag for
# it: on the bed it must bind loopback, on a free port, so two drills can run at once.
VELERO_LD_EXTRA="-X sigs.k8s.io/controller-runtime/pkg/metrics/server.DefaultBindAddress=127.0.0.1:0"

build_velero() {
  local v=$1 d; d=$(velero_dir "$v")
  # The stamp records the link settings: changing them rebuilds.
  if [[ -f $d/.ok && -x $d/bin/velero && $(cat "$d/.ok") == "$VELERO_LD_EXTRA" ]]; then report "velero $v" cached; return; fi
  local t0; t0=$(now)
  local src=$d/src gomod
  new_go_module "$src" vdrill.local/testbed/velero
  gomod=$(go_mod_file "$src" "github.com/vmware-tanzu/velero@$v")
  copy_replaces "$src" "$gomod"   # kopia fork etc.
  apply_go_replaces "$src"
  (cd "$src" && go mod edit -require="github.com/vmware-tanzu/velero@$v" &&
    go get "github.com/vmware-tanzu/velero/cmd/velero@$v")
  local ld="$GO_LDFLAGS_BASE $VELERO_LD_EXTRA -X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=$v"
  ld+=" -X github.com/vmware-tanzu/velero/pkg/buildinfo.GitTreeState=clean"
  local hash
  hash=$(cd "$src" && go mod download -json "github.com/vmware-tanzu/velero@$v" | jq -r '.Origin.Hash // empty')
  [[ -n $hash ]] && ld+=" -X github.com/vmware-tanzu/velero/pkg/buildinfo.GitSHA=$hash"
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$d/bin/velero.tmp.$$" github.com/vmware-tanzu/velero/cmd/velero)
  mv -f "$d/bin/velero.tmp.$$" "$d/bin/velero"; printf '%s' "$VELERO_LD_EXTRA" >"$d/.ok"
  report "velero $v" "built in $(($(now) - t0))s"
}

# plugin_fetchable NAME VERSION: 0 if cached or the Go proxy serves it (reports UNAVAILABLE otherwise).
plugin_fetchable() {
  local name=$1 pv=$2 mod d err; mod=$(plugin_module "$name"); d=$(plugin_dir "$name" "$pv")
  [[ -f $d/.ok ]] && return 0
  if [[ -f $d/.unavailable ]] && (($(now) - $(stat -c %Y "$d/.unavailable") < 86400)); then
    report "plugin $name $pv" "UNAVAILABLE (checked $(date -r "$d/.unavailable" +%F' '%T), rm $d/.unavailable to retry): $(head -c 200 "$d/.unavailable")"
    return 1
  fi
  mkdir -p "$d/probe"
  [[ -f $d/probe/go.mod ]] || printf 'module probe\n' >"$d/probe/go.mod"
  if ! go_mod_file "$d/probe" "$mod@$pv" >/dev/null 2>"$d/err"; then
    err=$(tr '\n\t' '  ' <"$d/err"); printf '%s\n' "$err" >"$d/.unavailable"
    report "plugin $name $pv" "UNAVAILABLE: $err"
    return 1
  fi
  rm -rf "$d/.unavailable" "$d/err" "$d/probe"
}

# build_plugin NAME VERSION (call only after plugin_fetchable succeeded)
build_plugin() {
  local name=$1 pv=$2 mod d; mod=$(plugin_module "$name"); d=$(plugin_dir "$name" "$pv")
  local bin=$d/bin/velero-plugin-for-${mod##*/velero-plugin-for-}
  if [[ -f $d/.ok && -x $bin ]]; then report "plugin $name $pv" cached; return 0; fi
  local t0; t0=$(now)
  local src=$d/src gomod
  new_go_module "$src" "vdrill.local/testbed/plugin-$name"
  gomod=$(go_mod_file "$src" "$mod@$pv")
  copy_replaces "$src" "$gomod"
  apply_go_replaces "$src"
  local pkg=$mod/${mod##*/}   # main package lives in a same-named subdirectory
  (cd "$src" && go mod edit -require="$mod@$pv" && go get "$pkg@$pv")
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$GO_LDFLAGS_BASE" -o "$bin.tmp.$$" "$pkg")
  mv -f "$bin.tmp.$$" "$bin"; touch "$d/.ok"
  report "plugin $name $pv" "built in $(($(now) - t0))s"
}

do_velero() {
  local entry v spec name pv
  for entry in $VELERO_VERSIONS; do
    v=${entry%%:*}
    build_velero "$v"
    local pdir; pdir=$(velero_dir "$v")/plugins
    mkdir -p "$pdir"
    IFS=: read -ra specs <<<"${entry#*:}"
    for spec in "${specs[@]}"; do
      [[ $spec == "$entry" || -z $spec ]] && continue
      name=${spec%%=*} pv=${spec#*=}
      if plugin_fetchable "$name" "$pv"; then
        build_plugin "$name" "$pv"
        local src; src=$(ls "$(plugin_dir "$name" "$pv")"/bin/velero-plugin-for-*)
        # hard link (plain copy across file systems): velero wants regular executables
        ln -f "$src" "$pdir/" 2>/dev/null || cp -f "$src" "$pdir/"
        # Versions live beside the plugin dir: Velero warns about every non-executable in it.
        mkdir -p "$pdir.versions"; echo "$pv" >"$pdir.versions/$name"
      fi
    done
  done
}

# --- localstack -----------------------------------------------------------------

find_python313() {
  if [[ -n ${VDRILL_PYTHON313:-} ]]; then echo "$VDRILL_PYTHON313"; return; fi
  local p root
  if command -v pyenv >/dev/null; then
    root=$(pyenv root)
    for p in "$root"/versions/"$LOCALSTACK_PYTHON_MINOR".*/bin/python"$LOCALSTACK_PYTHON_MINOR"; do
      [[ -x $p ]] && { echo "$p"; return; }
    done
  fi
  command -v "python$LOCALSTACK_PYTHON_MINOR" || return 1
}
localstack_version() { sed -n 's/^localstack-core==//p' "$HERE/$LOCALSTACK_LOCK"; }
localstack_dir() { echo "$CACHE/localstack/$(localstack_version)"; }
do_localstack() {
  local lv d lock; lv=$(localstack_version); d=$(localstack_dir); lock=$HERE/$LOCALSTACK_LOCK
  if [[ -f $d/.ok && $(cat "$d/.ok") == "$(sha "$lock")" && -x $d/venv/bin/python ]]; then
    report "localstack $lv" cached; return
  fi
  local t0 py; t0=$(now)
  py=$(find_python313) || { report "localstack $lv" "FAILED: no python $LOCALSTACK_PYTHON_MINOR (set VDRILL_PYTHON313)"; return 1; }
  rm -rf "$d"; mkdir -p "$d"
  "$py" -m venv "$d/venv"
  "$d/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$d/venv/bin/python" -m pip install -q --disable-pip-version-check -r "$lock"
  cp "$lock" "$d/requirements.lock"
  sha "$lock" >"$d/.ok"
  report "localstack $lv" "installed in $(($(now) - t0))s"
}

# --- azurite --------------------------------------------------------------------

azurite_dir() { echo "$CACHE/azurite/$AZURITE_VERSION"; }
do_azurite() {
  local d key; d=$(azurite_dir)
  key=$(cat "$HERE/azurite/package.json" "$HERE/azurite/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [[ -f $d/.ok && $(cat "$d/.ok") == "$key" && -x $d/node_modules/.bin/azurite-blob ]]; then
    report "azurite $AZURITE_VERSION" cached; return
  fi
  local t0; t0=$(now)
  rm -rf "$d"; mkdir -p "$d"
  cp "$HERE/azurite/package.json" "$HERE/azurite/package-lock.json" "$d/"
  (cd "$d" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$key" >"$d/.ok"
  report "azurite $AZURITE_VERSION" "installed in $(($(now) - t0))s"
}

# --- lowkey-vault ---------------------------------------------------------------

lowkey_dir() { echo "$CACHE/lowkey-vault/$LOWKEY_VAULT_VERSION"; }
do_lowkey_vault() {
  local d; d=$(lowkey_dir)
  local jar=$d/lowkey-vault-app.jar
  if [[ -f $d/.ok && -f $jar ]]; then report "lowkey-vault $LOWKEY_VAULT_VERSION" cached; return 0; fi
  if [[ -f $d/.unavailable ]] && (($(now) - $(stat -c %Y "$d/.unavailable") < 86400)); then
    report "lowkey-vault $LOWKEY_VAULT_VERSION" "UNAVAILABLE (checked $(date -r "$d/.unavailable" +%F' '%T): $(head -c 200 "$d/.unavailable"))"
    return 0
  fi
  local t0; t0=$(now)
  mkdir -p "$d"
  local gav=com.github.nagyesta.lowkey-vault:lowkey-vault-app:$LOWKEY_VAULT_VERSION:jar
  if mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$gav" -Dmdep.stripVersion=true \
       -DoutputDirectory="$d" >"$d/mvn.log" 2>&1 && [[ -f $d/lowkey-vault-app.jar ]]; then
    rm -f "$d/.unavailable" "$d/mvn.log"; touch "$d/.ok"
    report "lowkey-vault $LOWKEY_VAULT_VERSION" "downloaded in $(($(now) - t0))s"
  else
    local err; err=$(sed 's/\x1b\[[0-9;]*m//g' "$d/mvn.log" | grep -m1 -E 'Could not (find|resolve)|ERROR' | head -c 300)
    printf '%s\n' "${err:-see $d/mvn.log}" >"$d/.unavailable"
    report "lowkey-vault $LOWKEY_VAULT_VERSION" "UNAVAILABLE: ${err:-see $d/mvn.log}"
  fi
  return 0
}

# --- manifest -------------------------------------------------------------------

write_manifest() {
  local j kd ed
  j=$(jq -n --arg cache "$CACHE" '{cache: $cache}')
  kd=$(kube_dir)
  if [[ -f $kd/.ok ]]; then
    j=$(jq --arg v "$KUBE_VERSION" --arg a "$kd/bin/kube-apiserver" --arg c "$kd/bin/kube-controller-manager" \
      '.kubernetes = {version: $v, kube_apiserver: $a, kube_controller_manager: $c}' <<<"$j")
  fi
  ed=$(etcd_dir)
  if [[ -f $ed/.ok ]]; then
    j=$(jq --arg v "$ETCD_VERSION" --arg b "$ed/bin/etcd" '.etcd = {version: $v, bin: $b}' <<<"$j")
  fi
  j=$(jq '.velero = []' <<<"$j")
  local entry v vd pdir plugins f
  for entry in $VELERO_VERSIONS; do
    v=${entry%%:*}; vd=$(velero_dir "$v"); pdir=$vd/plugins
    [[ -f $vd/.ok ]] || continue
    plugins='{}'
    rm -f "$pdir"/.*.version   # left by earlier versions of this script
    for f in "$pdir.versions"/*; do
      [[ -f $f ]] || continue
      plugins=$(jq --arg n "${f##*/}" --arg pv "$(cat "$f")" '.[$n] = $pv' <<<"$plugins")
    done
    j=$(jq --arg v "$v" --arg b "$vd/bin/velero" --arg p "$pdir" --argjson pl "$plugins" \
      '.velero += [{version: $v, bin: $b, plugin_dir: $p, plugins: $pl}]' <<<"$j")
  done
  local ld; ld=$(localstack_dir)
  if [[ -f $ld/.ok ]]; then
    j=$(jq --arg v "$(localstack_version)" --arg p "$ld/venv/bin/python" '.localstack = {version: $v, python: $p}' <<<"$j")
  fi
  local ad; ad=$(azurite_dir)
  if [[ -f $ad/.ok ]]; then
    j=$(jq --arg v "$AZURITE_VERSION" --arg b "$ad/node_modules/.bin/azurite-blob" '.azurite = {version: $v, blob_bin: $b}' <<<"$j")
  fi
  local lk; lk=$(lowkey_dir)
  if [[ -f $lk/.ok ]]; then
    j=$(jq --arg v "$LOWKEY_VAULT_VERSION" --arg jar "$lk/lowkey-vault-app.jar" --arg java "$JAVA25_HOME/bin/java" \
      '.lowkey_vault = {version: $v, jar: $jar, java: $java}' <<<"$j")
  fi
  printf '%s\n' "$j" >"$CACHE/testbed.json.tmp.$$"
  mv -f "$CACHE/testbed.json.tmp.$$" "$CACHE/testbed.json"
}

# --- one builder at a time ----------------------------------------------------------

# The whole run holds an exclusive flock on $CACHE/.setup.lock (fd 9, inherited by
# the build commands, so a build still running after its setup.sh died keeps it too).
# The holder describes itself in $CACHE/.setup.owner for whoever waits.
LOCK_FILE=$CACHE/.setup.lock
OWNER_FILE=$CACHE/.setup.owner

# holder_of_lock: "another setup.sh (pid N, started HH:MM:SS, building: ...)".
holder_of_lock() {
  local k v pid='' started='' host='' components='' alive=''
  # The holder writes the file right after it gets the lock: give it a moment.
  for _ in {1..10}; do
    pid='' started='' host='' components=''
    if [[ -f $OWNER_FILE ]]; then
      while IFS='=' read -r k v; do
        case $k in pid) pid=$v ;; started) started=$v ;; host) host=$v ;; components) components=$v ;; esac
      done <"$OWNER_FILE"
    fi
    alive=''
    if [[ -n $pid && $host != "$HOSTNAME" ]] || { [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; }; then alive=1; break; fi
    sleep 0.1
  done
  if [[ -z $pid ]]; then
    printf 'another setup.sh (it has not said who it is: no %s)' "$OWNER_FILE"; return
  fi
  printf 'another setup.sh (pid %s' "$pid"
  [[ $host == "$HOSTNAME" ]] || printf ' on %s' "$host"
  [[ -n $started ]] && printf ', started %s' "$(date -d "@$started" +%H:%M:%S)"
  printf ', building: %s' "${components:-everything}"
  [[ -n $alive ]] || printf '; it has exited, processes it started still hold the lock'
  printf ')'
}

# take_lock COMPONENTS ARGS...: wait for the cache's lock, then say who holds it now.
take_lock() {
  local components=$1; shift
  exec 9>>"$LOCK_FILE"
  if ! flock -n 9; then
    local holder t0; holder=$(holder_of_lock); t0=$(now)
    log "waiting for $holder to finish"
    flock 9
    log "got the lock after $(($(now) - t0))s"
  fi
  printf 'pid=%s\nstarted=%s\nhost=%s\ncomponents=%s\ncommand=%s\n' \
    "$$" "$T_START" "$HOSTNAME" "$components" "$0${*:+ $*}" >"$OWNER_FILE.tmp.$$"
  mv -f "$OWNER_FILE.tmp.$$" "$OWNER_FILE"
}

# --- main -----------------------------------------------------------------------

components=("$@")
((${#components[@]})) || read -ra components <<<"$ALL_COMPONENTS"
for c in "${components[@]}"; do
  [[ " $ALL_COMPONENTS " == *" $c "* ]] || { echo "unknown component '$c' (known: $ALL_COMPONENTS)" >&2; exit 2; }
done

need jq curl flock
log "cache: $CACHE"
take_lock "${components[*]}" "$@"
rc=0
for c in "${components[@]}"; do
  case $c in
    kube|etcd|velero) need go ;;
    azurite) need npm ;;
    lowkey-vault) need mvn ;;
  esac
  # own subshell with errexit in force (a function called from `||` would run without it)
  set +e
  (set -e; "do_${c//-/_}")
  st=$?
  set -e
  if ((st != 0)); then report "$c" "FAILED (exit $st, see output above)"; rc=1; fi
done
write_manifest

echo "== vdrill test bed ($CACHE) =="
sed 's/^/  /' "$SUMMARY_FILE"
echo "  manifest: $CACHE/testbed.json"
echo "  total: $(($(now) - T_START))s"
exit $rc
