#!/usr/bin/env bash
# Provision the vdrill local test bed into ${VDRILL_CACHE:-$HOME/.cache/vdrill}.
#
#   ci/testbed/setup.sh                 # all components
#   ci/testbed/setup.sh velero etcd     # only some: kube etcd velero localstack azurite lowkey-vault
#
# Idempotent: each component/version lives in its own directory with a stamp
# file (.ok) holding a sha256 over every input of its build (versions, toolchain,
# flags, lock files, the text of the bash functions that build it): a matching
# stamp is reused ("cached"), a different one rebuilds. Writes
# $VDRILL_CACHE/testbed.json at the end (always describing everything present in
# the cache for the pinned versions).
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

# --- stamps -----------------------------------------------------------------------
#
# A build's inputs are an array INPUTS of "<name>=<value>" strings (a version, a
# command's output, a file's contents, `declare -f` of the functions that build
# it). The stamp is the sha256 over all of them; DIR/.ok holds it and
# DIR/.ok.inputs one "<name> <sha256 of value>" line per input, to tell what changed.

# stamp_of INPUT...: the sha256 over the inputs.
stamp_of() { printf '%s\0' "$@" | sha256sum | cut -d' ' -f1; }

inputs_digest() {
  local i
  for i in "$@"; do printf '%s %s\n' "${i%%=*}" "$(printf '%s' "${i#*=}" | sha256sum | cut -d' ' -f1)"; done
}

# inputs_line INPUT...: the inputs on one line, long or multi-line values as their sha256.
inputs_line() {
  local i v out=()
  for i in "$@"; do
    v=${i#*=}
    if [[ $v == *$'\n'* || ${#v} -gt 160 ]]; then
      v="sha256:$(printf '%s' "$v" | sha256sum | cut -c1-12)"
    fi
    out+=("${i%%=*}=$v")
  done
  printf '%s' "${out[0]-}"; ((${#out[@]} < 2)) || printf '; %s' "${out[@]:1}"
}

# check_stamp DIR FILE...: 0 if DIR/.ok is the stamp of INPUTS and every FILE
# (relative to DIR) exists. Sets STAMP; otherwise WHY says what differs.
check_stamp() {
  local d=$1 f changed; shift
  STAMP=$(stamp_of "${INPUTS[@]}")
  if [[ ! -f $d/.ok ]]; then WHY="not built yet"; return 1; fi
  if [[ $(<"$d/.ok") != "$STAMP" ]]; then
    changed=$(inputs_digest "${INPUTS[@]}" | grep -vxF -f "$d/.ok.inputs" 2>/dev/null | cut -d' ' -f1 | paste -sd' ' || true)
    WHY="stamp changed${changed:+ ($changed)}"; return 1
  fi
  for f in "$@"; do [[ -e $d/$f ]] || { WHY="$f is missing"; return 1; }; done
  WHY=''
}

# begin_build DIR LABEL: say why it builds; the old stamp goes first.
begin_build() {
  log "$2: $WHY, building"
  printf '== %s: build at %s by setup.sh pid %s (%s); stamp %s; inputs: %s\n' \
    "$2" "$(date '+%F %T %z')" "$$" "$WHY" "$STAMP" "$(inputs_line "${INPUTS[@]}")" >&2
  mkdir -p "$1"; rm -f "$1/.ok" "$1/.ok.inputs"
  T0=$(now)
}

# put_stamp DIR: record STAMP (and the inputs' digests) after a build.
put_stamp() {
  inputs_digest "${INPUTS[@]}" >"$1/.ok.inputs.tmp.$$"
  mv -f "$1/.ok.inputs.tmp.$$" "$1/.ok.inputs"
  printf '%s\n' "$STAMP" >"$1/.ok.tmp.$$"
  mv -f "$1/.ok.tmp.$$" "$1/.ok"
}

# go_inputs: the Go toolchain and settings every Go build depends on.
go_inputs() {
  local v; v=$(go version)
  printf '%s GOAMD64=%s CGO_ENABLED=%s GOFLAGS=%s' "${v#go version }" "$(go env GOAMD64)" "$CGO_ENABLED" "$GOFLAGS"
}

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
kube_ldflags() {
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local ld="$GO_LDFLAGS_BASE -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ld+=" -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
  printf '%s' "$ld"
}
# build_kube DIR LDFLAGS
build_kube() {
  local d=$1 ld=$2 src=$1/src gomod m b
  new_go_module "$src" vdrill.local/testbed/kube
  gomod=$(go_mod_file "$src" "k8s.io/kubernetes@$KUBE_VERSION")
  # staging modules: k8s.io/X => ./staging/src/k8s.io/X  ->  k8s.io/X@v0.<minor>.<patch>
  local staging="v0.${KUBE_VERSION#v1.}"
  for m in $(go mod edit -json "$gomod" | jq -r '.Replace[] | select(.New.Path | startswith("./staging/")) | .Old.Path'); do
    (cd "$src" && go mod edit -replace="$m=$m@$staging")
  done
  (cd "$src" && go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION" &&
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION")
  local tmp=$d/bin.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp" "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
  for b in kube-apiserver kube-controller-manager; do mv -f "$tmp/$b" "$d/bin/$b"; done
  rmdir "$tmp"
}
do_kube() {
  local d ld; d=$(kube_dir); ld=$(kube_ldflags)
  INPUTS=("version=$KUBE_VERSION" "go=$(go_inputs)" "ldflags=$ld"
    "recipe=$(declare -f build_kube new_go_module go_mod_file)")
  if check_stamp "$d" bin/kube-apiserver bin/kube-controller-manager; then
    report "kube $KUBE_VERSION" cached; return
  fi
  begin_build "$d" "kube $KUBE_VERSION"
  build_kube "$d" "$ld"
  put_stamp "$d"
  report "kube $KUBE_VERSION" "built in $(($(now) - T0))s"
}

# --- etcd -----------------------------------------------------------------------

etcd_dir() { echo "$CACHE/etcd/$ETCD_VERSION"; }
# build_etcd DIR LDFLAGS
build_etcd() {
  local d=$1 ld=$2 src=$1/src
  new_go_module "$src" vdrill.local/testbed/etcd
  # go.etcd.io/etcd/server/v3 has a main package at its root calling etcdmain.Main(os.Args).
  (cd "$src" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$d/bin/etcd.tmp.$$" go.etcd.io/etcd/server/v3)
  mv -f "$d/bin/etcd.tmp.$$" "$d/bin/etcd"
}
do_etcd() {
  local d ld=$GO_LDFLAGS_BASE; d=$(etcd_dir)
  INPUTS=("version=$ETCD_VERSION" "go=$(go_inputs)" "ldflags=$ld" "recipe=$(declare -f build_etcd new_go_module)")
  if check_stamp "$d" bin/etcd; then report "etcd $ETCD_VERSION" cached; return; fi
  begin_build "$d" "etcd $ETCD_VERSION"
  build_etcd "$d" "$ld"
  put_stamp "$d"
  report "etcd $ETCD_VERSION" "built in $(($(now) - T0))s"
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

# velero_ldflags VERSION: the link flags of that Velero, but for buildinfo.GitSHA,
# which build_velero adds from the module's origin (fixed by the version).
velero_ldflags() {
  local ld="$GO_LDFLAGS_BASE $VELERO_LD_EXTRA -X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=$1"
  ld+=" -X github.com/vmware-tanzu/velero/pkg/buildinfo.GitTreeState=clean"
  printf '%s' "$ld"
}

# build_velero VERSION DIR LDFLAGS
build_velero() {
  local v=$1 d=$2 ld=$3 src=$2/src gomod hash
  new_go_module "$src" vdrill.local/testbed/velero
  gomod=$(go_mod_file "$src" "github.com/vmware-tanzu/velero@$v")
  copy_replaces "$src" "$gomod"   # kopia fork etc.
  apply_go_replaces "$src"
  (cd "$src" && go mod edit -require="github.com/vmware-tanzu/velero@$v" &&
    go get "github.com/vmware-tanzu/velero/cmd/velero@$v")
  hash=$(cd "$src" && go mod download -json "github.com/vmware-tanzu/velero@$v" | jq -r '.Origin.Hash // empty')
  if [[ -n $hash ]]; then ld+=" -X github.com/vmware-tanzu/velero/pkg/buildinfo.GitSHA=$hash"; fi
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$d/bin/velero.tmp.$$" github.com/vmware-tanzu/velero/cmd/velero)
  mv -f "$d/bin/velero.tmp.$$" "$d/bin/velero"
}

# remember_unavailable DIR TEXT: a registry refused it (kept 24 h in DIR/.unavailable).
remember_unavailable() {
  mkdir -p "$1"
  printf '%s\n' "$2" >"$1/.unavailable.tmp.$$"
  mv -f "$1/.unavailable.tmp.$$" "$1/.unavailable"
}
# still_unavailable DIR: 0 if a refusal was recorded in the last 24 h (prints when and what).
still_unavailable() {
  [[ -f $1/.unavailable ]] || return 1
  (($(now) - $(stat -c %Y "$1/.unavailable") < 86400)) || return 1
  printf '(checked %s, rm %s to retry): %s' "$(date -r "$1/.unavailable" '+%F %T')" "$1/.unavailable" "$(head -c 200 "$1/.unavailable")"
}

# plugin_fetchable NAME VERSION: 0 if cached or the Go proxy serves it (reports UNAVAILABLE otherwise).
plugin_fetchable() {
  local name=$1 pv=$2 mod d err why; mod=$(plugin_module "$name"); d=$(plugin_dir "$name" "$pv")
  [[ -f $d/.ok ]] && return 0
  if why=$(still_unavailable "$d"); then
    report "plugin $name $pv" "UNAVAILABLE $why"
    return 1
  fi
  local probe=$d/probe.tmp.$$
  mkdir -p "$probe"; printf 'module probe\n' >"$probe/go.mod"
  if ! go_mod_file "$probe" "$mod@$pv" >/dev/null 2>"$probe/err"; then
    err=$(tr '\n\t' '  ' <"$probe/err"); rm -rf "$probe"
    remember_unavailable "$d" "$err"
    report "plugin $name $pv" "UNAVAILABLE: $err"
    return 1
  fi
  rm -rf "$d/.unavailable" "$probe"
}

# build_plugin NAME VERSION DIR BIN LDFLAGS
build_plugin() {
  local name=$1 pv=$2 d=$3 bin=$4 ld=$5 mod src=$3/src gomod; mod=$(plugin_module "$name")
  new_go_module "$src" "vdrill.local/testbed/plugin-$name"
  gomod=$(go_mod_file "$src" "$mod@$pv")
  copy_replaces "$src" "$gomod"
  apply_go_replaces "$src"
  local pkg=$mod/${mod##*/}   # main package lives in a same-named subdirectory
  (cd "$src" && go mod edit -require="$mod@$pv" && go get "$pkg@$pv")
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$bin.tmp.$$" "$pkg")
  mv -f "$bin.tmp.$$" "$bin"
}

# ensure_plugin NAME VERSION (call only after plugin_fetchable succeeded)
ensure_plugin() {
  local name=$1 pv=$2 mod d bin ld=$GO_LDFLAGS_BASE; mod=$(plugin_module "$name"); d=$(plugin_dir "$name" "$pv")
  bin=$d/bin/${mod##*/}
  INPUTS=("plugin=$name $pv" "module=$mod" "go=$(go_inputs)" "ldflags=$ld" "replaces=${GO_REPLACES:-}"
    "recipe=$(declare -f build_plugin plugin_module new_go_module go_mod_file copy_replaces apply_go_replaces)")
  if check_stamp "$d" "bin/${mod##*/}"; then report "plugin $name $pv" cached; return 0; fi
  begin_build "$d" "plugin $name $pv"
  build_plugin "$name" "$pv" "$d" "$bin" "$ld"
  put_stamp "$d"
  report "plugin $name $pv" "built in $(($(now) - T0))s"
}

# velero_entry VERSION: its line of VELERO_VERSIONS ("<velero>:<plugin>=<version>...").
velero_entry() {
  local e
  for e in $VELERO_VERSIONS; do [[ ${e%%:*} == "$1" ]] && { echo "$e"; return 0; }; done
  return 1
}

# velero_one VERSION: that Velero and its plugins.
velero_one() {
  local v=$1 entry d ld spec name pv specs
  entry=$(velero_entry "$v"); d=$(velero_dir "$v"); ld=$(velero_ldflags "$v")
  INPUTS=("version=$v" "go=$(go_inputs)" "ldflags=$ld" "replaces=${GO_REPLACES:-}"
    "recipe=$(declare -f build_velero velero_ldflags new_go_module go_mod_file copy_replaces apply_go_replaces)")
  if check_stamp "$d" bin/velero; then
    report "velero $v" cached
  else
    begin_build "$d" "velero $v"
    build_velero "$v" "$d" "$ld"
    put_stamp "$d"
    report "velero $v" "built in $(($(now) - T0))s"
  fi
  local pdir=$d/plugins
  mkdir -p "$pdir" "$pdir.versions"
  IFS=: read -ra specs <<<"${entry#*:}"
  for spec in "${specs[@]}"; do
    [[ $spec == "$entry" || -z $spec ]] && continue
    name=${spec%%=*} pv=${spec#*=}
    if plugin_fetchable "$name" "$pv"; then
      ensure_plugin "$name" "$pv"
      local src; src=$(plugin_dir "$name" "$pv")/bin/$(plugin_module "$name" | sed 's,.*/,,')
      # hard link (plain copy across file systems): velero wants regular executables
      local tmp=$pdir/.${src##*/}.tmp.$$
      ln -f "$src" "$tmp" 2>/dev/null || cp -f "$src" "$tmp"
      mv -f "$tmp" "$pdir/${src##*/}"
      # Versions live beside the plugin dir: Velero warns about every non-executable in it.
      echo "$pv" >"$pdir.versions/$name.tmp.$$"; mv -f "$pdir.versions/$name.tmp.$$" "$pdir.versions/$name"
    fi
  done
}

do_velero() {
  local entry
  for entry in $VELERO_VERSIONS; do velero_one "${entry%%:*}"; done
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
# build_localstack DIR LOCK PYTHON: the venv is built in place (its scripts hold
# absolute paths, it cannot be renamed); the stamp is written only after it.
build_localstack() {
  local d=$1 lock=$2 py=$3
  rm -rf "$d"; mkdir -p "$d"
  "$py" -m venv "$d/venv"
  "$d/venv/bin/python" -m pip install --progress-bar off --disable-pip-version-check --upgrade pip
  "$d/venv/bin/python" -m pip install --progress-bar off --disable-pip-version-check -r "$lock"
  cp "$lock" "$d/requirements.lock.tmp.$$"; mv -f "$d/requirements.lock.tmp.$$" "$d/requirements.lock"
}
do_localstack() {
  local lv d lock py; lv=$(localstack_version); d=$(localstack_dir); lock=$HERE/$LOCALSTACK_LOCK
  py=$(find_python313) || { echo "no python $LOCALSTACK_PYTHON_MINOR (set VDRILL_PYTHON313)" >&2; return 1; }
  INPUTS=("version=$lv" "lock=$(<"$lock")" "python=$("$py" --version 2>&1)" "recipe=$(declare -f build_localstack)")
  if check_stamp "$d" venv/bin/python; then report "localstack $lv" cached; return; fi
  begin_build "$d" "localstack $lv"
  build_localstack "$d" "$lock" "$py"
  put_stamp "$d"
  report "localstack $lv" "installed in $(($(now) - T0))s"
}

# --- azurite --------------------------------------------------------------------

azurite_dir() { echo "$CACHE/azurite/$AZURITE_VERSION"; }
# build_azurite DIR: npm ci in a folder of its own, renamed into place.
build_azurite() {
  local d=$1 tmp; tmp=$(dirname "$1")/.${1##*/}.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  cp "$HERE/azurite/package.json" "$HERE/azurite/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error)
  rm -rf "$d"; mv "$tmp" "$d"
}
do_azurite() {
  local d; d=$(azurite_dir)
  INPUTS=("version=$AZURITE_VERSION" "package.json=$(<"$HERE/azurite/package.json")"
    "package-lock.json=$(<"$HERE/azurite/package-lock.json")" "node=$(node --version)" "recipe=$(declare -f build_azurite)")
  if check_stamp "$d" node_modules/.bin/azurite-blob; then report "azurite $AZURITE_VERSION" cached; return; fi
  begin_build "$d" "azurite $AZURITE_VERSION"
  build_azurite "$d"
  put_stamp "$d"
  report "azurite $AZURITE_VERSION" "installed in $(($(now) - T0))s"
}

# --- lowkey-vault ---------------------------------------------------------------

lowkey_dir() { echo "$CACHE/lowkey-vault/$LOWKEY_VAULT_VERSION"; }
# fetch_lowkey_vault DIR: the app's jar from Maven Central (1 if it is not there;
# Maven's output in DIR/mvn.log.tmp.<pid>).
fetch_lowkey_vault() {
  local d=$1 tmp=$1/download.tmp.$$ st=0
  local gav=com.github.nagyesta.lowkey-vault:lowkey-vault-app:$LOWKEY_VAULT_VERSION:jar
  rm -rf "$tmp"
  mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$gav" -Dmdep.stripVersion=true \
    -DoutputDirectory="$tmp" >"$d/mvn.log.tmp.$$" 2>&1 || st=$?
  cat "$d/mvn.log.tmp.$$" >&2
  if ((st == 0)) && [[ -f $tmp/lowkey-vault-app.jar ]]; then
    mv -f "$tmp/lowkey-vault-app.jar" "$d/lowkey-vault-app.jar"; rm -rf "$tmp" "$d/mvn.log.tmp.$$"
    return 0
  fi
  rm -rf "$tmp"
  return 1
}
do_lowkey_vault() {
  local d why label="lowkey-vault $LOWKEY_VAULT_VERSION"; d=$(lowkey_dir)
  INPUTS=("version=$LOWKEY_VAULT_VERSION" "recipe=$(declare -f fetch_lowkey_vault)")
  if check_stamp "$d" lowkey-vault-app.jar; then report "$label" cached; return 0; fi
  if why=$(still_unavailable "$d"); then report "$label" "UNAVAILABLE $why"; return 0; fi
  begin_build "$d" "$label"
  if fetch_lowkey_vault "$d"; then
    rm -f "$d/.unavailable"; put_stamp "$d"
    report "$label" "downloaded in $(($(now) - T0))s"
  else
    local err; err=$(sed 's/\x1b\[[0-9;]*m//g' "$d/mvn.log.tmp.$$" | grep -m1 -E 'Could not (find|resolve)|ERROR' | head -c 300 || true)
    rm -f "$d/mvn.log.tmp.$$"
    remember_unavailable "$d" "${err:-Maven failed (its output is above)}"
    report "$label" "UNAVAILABLE: ${err:-Maven failed}"
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
