#!/usr/bin/env bash
# shellcheck disable=SC2317 # (info) functions run indirectly (do_<component>, trap) are not unreachable
# Provision the vdrill local test bed into ${VDRILL_CACHE:-$HOME/.cache/vdrill}.
#
#   ci/testbed/setup.sh                   # all components
#   ci/testbed/setup.sh velero etcd       # only some: kube etcd velero localstack azurite lowkey-vault
#                                         # fake-gcs kind kind-node (ci/testbed/kind-node.sh)
#                                         # images (ci/testbed/images.sh)
#   ci/testbed/setup.sh velero@1.18 etcd  # velero@<version>: the pinned Velero versions matching
#                                         # 1.18 / v1.18 (newest v1.18.x) or 1.18.3 / v1.18.3;
#                                         # a version not pinned is built on demand (PLUGIN_LINES)
#
# One run at a time per cache: the run holds an exclusive flock on $CACHE/.setup.lock;
# a second run waits (saying for whom), then reuses what the first one built.
# Idempotent: each component/version lives in its own directory with a stamp
# file (.ok) holding a sha256 over every input of its build (versions, toolchain,
# flags, lock files, the text of the bash functions that build it): a matching
# stamp is reused ("cached"), a different one rebuilds. Writes
# $VDRILL_CACHE/testbed.json at the end (always describing everything present in
# the cache for the pinned versions).
#
# Output: stdout carries only progress events for vdrill, one a line,
#   ::vdrill-event <component> <state> <detail...>
# (format in NOTES.md, "Lock, stamps and events"). The human log and the summary
# go to stderr; each component's build output to $CACHE/logs/<component>.log.
# Test hook: VDRILL_SETUP_DELAY=<component>:<seconds>[,...] sleeps in that component.
# Exit status: 0 every requested component is there (or unavailable: refused by the
# registries, or its ../shared files missing), 1 a component failed, 2 usage error.
# Needs: go, jq, curl, flock, python 3.13, node/npm, mvn, Java 25. Registries, plus
# two things no registry here serves, read from ${VDRILL_SHARED:-<repo>/../shared}
# (the folder `shared` beside the repository; NOTES.md, "From ../shared"):
#   goproxy/                 file-based Go module proxy with Velero's Azure plugin
#   sources/lowkey-vault/    lowkey-vault's app sources + a pom.xml (Maven build)
# Without them the Azure plugin and lowkey-vault are reported unavailable, the rest builds.
set -euo pipefail
shopt -s inherit_errexit

# Events go to the original stdout (fd 3), the human log to the original stderr
# (fd 4); anything else that writes to stdout goes to stderr.
exec 3>&1 4>&2 1>&2

# Seconds a component's first (cold) build takes on the 2-core CI machine (NOTES.md,
# "Provisioning"), announced in its `start` event. velero: one version with its aws
# and azure plugins (velero ~270 s, aws ~200 s, azure ~100 s from empty Go caches).
# lowkey-vault: mvn package with an empty local Maven repository (14-35 s).
declare -A COLD_SECONDS=([kube]=420 [etcd]=60 [velero]=600 [localstack]=90 [azurite]=60 [lowkey-vault]=40 [fake-gcs]=120)
# kind: go install (NOTES.md, "kind"); kind-node: debootstrap, kubelet & co., CoreDNS,
# local-path-provisioner and the image, from empty Go caches.
COLD_SECONDS+=([kind]=60 [kind-node]=1200)
# images: the Velero helpers and cp-plugin of each pinned version, and LocalStack's
# Debian + venv (ci/testbed/images.sh).
COLD_SECONDS+=([images]=300)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE=${VDRILL_CACHE:-$HOME/.cache/vdrill}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
LOGS=$CACHE/logs
# Files from outside the registries (see the top): VDRILL_SHARED, or the folder
# `shared` beside the repository root (this script is <repo>/ci/testbed/setup.sh),
# or, for a clone made elsewhere (CI clones into a folder of its own), the one
# beside the local repository it was cloned from.
default_shared() {
  local here=$HERE/../../../shared origin
  if [[ ! -d $here ]]; then
    origin=$(git -C "$HERE" config --get remote.origin.url 2>/dev/null || true)
    origin=${origin#file://}
    if [[ $origin == /* && -d $origin/../shared ]]; then here=$origin/../shared; fi
  fi
  printf '%s' "$here"
}
SHARED=${VDRILL_SHARED:-$(default_shared)}
SHARED=$(realpath -m -- "$SHARED")

ALL_COMPONENTS="kube etcd velero localstack azurite lowkey-vault fake-gcs kind kind-node images"
# shellcheck source=kind-node.sh
source "$HERE/kind-node.sh"
# shellcheck source=images.sh
source "$HERE/images.sh"
export CGO_ENABLED=0
# Velero's kopia fork (github.com/project-velero/kopia) has pseudo-versions that the
# checksum database does not know (404), e.g. the one velero v1.17.2 replaces kopia with.
# They still come from the Go module proxy; only the sumdb lookup is skipped for them.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/project-velero"
export GOFLAGS="-buildvcs=false"
GO_LDFLAGS_BASE="-s -w"

T_START=$(date +%s)
SUMMARY_FILE=$(mktemp)
LOCKED=''
cleanup() {
  rm -f "$SUMMARY_FILE"
  if [[ -n $LOCKED ]]; then
    sweep_temps "$$"
    # The owner file describes this run only while it holds the lock.
    if grep -qx "pid=$$" "$OWNER_FILE" 2>/dev/null; then rm -f "$OWNER_FILE"; fi
  fi
}
trap cleanup EXIT
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&4; }
report() { printf '%-24s %s\n' "$1" "$2" >>"$SUMMARY_FILE"; log "$1: $2"; }
now() { date +%s; }
usage_error() { printf '%s\n' "$*" >&4; exit 2; }

# --- events -----------------------------------------------------------------------
#
# event COMPONENT STATE DETAIL...: one line on stdout. COMP is the component being
# provisioned (set by run_component); its build output (stdout+stderr) goes to its log.
event() {
  local line="$*"
  line=${line//[$'\n\r\t']/ }
  printf '::vdrill-event %s\n' "${line%"${line##*[! ]}"}" >&3
}
step() {
  event "$COMP" step "$*"
  printf '== step: %s\n' "$*"
  log "$COMP: $*"
}
mark_cached() { event "$COMP" cached; }
mark_done() { event "$COMP" "done" "$(($(now) - COMP_T0))" "$*"; }
mark_unavailable() { event "$COMP" unavailable "$*"; }
# mark_absent: this machine lacks an input no registry serves (../shared, Java 25);
# vdrill skips the cells that need the component instead of failing them.
mark_absent() { event "$COMP" absent "$*"; }

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

# begin_build DIR LABEL: say why it builds, start the component's log (this
# attempt replaces the last one's); the old stamp goes first.
begin_build() {
  log "$2: $WHY, building (output: $LOG)"
  if [[ -z $LOG_OPEN ]]; then
    # stdout/stderr already write to $LOG_TMP: renamed, it is the log.
    mv -f "$LOG_TMP" "$LOG"; LOG_OPEN=1
  fi
  printf '== %s: build at %s by setup.sh pid %s (%s); stamp %s; inputs: %s\n' \
    "$2" "$(date '+%F %T %z')" "$$" "$WHY" "$STAMP" "$(inputs_line "${INPUTS[@]}")"
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
      case $c in mvn) pkgs+=(maven) ;; npm) pkgs+=(npm) ;; node) pkgs+=(nodejs) ;; flock) pkgs+=(util-linux) ;; dockerd) pkgs+=(docker.io) ;; gcc) pkgs+=(gcc libc6-dev) ;; *) pkgs+=("$c") ;; esac
    done
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
  else
    log "install them first"; echo "missing tools: ${missing[*]}" >&2; exit 1
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
    printf '%s\n' "$(printf '%s' "${err:-go mod download $2: ${out:-failed}}" | head -c 400)" >&2
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
  step downloading modules
  new_go_module "$src" vdrill.local/testbed/kube
  gomod=$(go_mod_file "$src" "k8s.io/kubernetes@$KUBE_VERSION")
  # staging modules: k8s.io/X => ./staging/src/k8s.io/X  ->  k8s.io/X@v0.<minor>.<patch>
  local staging="v0.${KUBE_VERSION#v1.}"
  for m in $(go mod edit -json "$gomod" | jq -r '.Replace[] | select(.New.Path | startswith("./staging/")) | .Old.Path'); do
    (cd "$src" && go mod edit -replace="$m=$m@$staging")
  done
  (cd "$src" && go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION" &&
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION")
  step compiling kube-apiserver and kube-controller-manager
  local tmp=$d/bin.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp" "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
  for b in kube-apiserver kube-controller-manager; do mv -f "$tmp/$b" "$d/bin/$b"; done
  rmdir "$tmp"
}
do_kube() {
  local d ld goin; d=$(kube_dir); ld=$(kube_ldflags); goin=$(go_inputs)
  INPUTS=("version=$KUBE_VERSION" "go=$goin" "ldflags=$ld"
    "recipe=$(declare -f build_kube new_go_module go_mod_file)")
  if check_stamp "$d" bin/kube-apiserver bin/kube-controller-manager; then
    report "kube $KUBE_VERSION" cached; mark_cached; return
  fi
  begin_build "$d" "kube $KUBE_VERSION"
  build_kube "$d" "$ld"
  put_stamp "$d"
  report "kube $KUBE_VERSION" "built in $(($(now) - T0))s"
  mark_done "built kube-apiserver and kube-controller-manager $KUBE_VERSION"
}

# --- etcd -----------------------------------------------------------------------

etcd_dir() { echo "$CACHE/etcd/$ETCD_VERSION"; }
# build_etcd DIR LDFLAGS
build_etcd() {
  local d=$1 ld=$2 src=$1/src
  step downloading modules
  new_go_module "$src" vdrill.local/testbed/etcd
  # go.etcd.io/etcd/server/v3 has a main package at its root calling etcdmain.Main(os.Args).
  (cd "$src" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  step "compiling etcd $ETCD_VERSION"
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$d/bin/etcd.tmp.$$" go.etcd.io/etcd/server/v3)
  mv -f "$d/bin/etcd.tmp.$$" "$d/bin/etcd"
}
do_etcd() {
  local d ld=$GO_LDFLAGS_BASE goin; d=$(etcd_dir); goin=$(go_inputs)
  INPUTS=("version=$ETCD_VERSION" "go=$goin" "ldflags=$ld" "recipe=$(declare -f build_etcd new_go_module)")
  if check_stamp "$d" bin/etcd; then report "etcd $ETCD_VERSION" cached; mark_cached; return; fi
  begin_build "$d" "etcd $ETCD_VERSION"
  build_etcd "$d" "$ld"
  put_stamp "$d"
  report "etcd $ETCD_VERSION" "built in $(($(now) - T0))s"
  mark_done "built etcd $ETCD_VERSION"
}

# --- velero + plugins -------------------------------------------------------------

velero_dir() { echo "$CACHE/velero/$1"; }
plugin_module() {
  case $1 in
    aws) echo github.com/vmware-tanzu/velero-plugin-for-aws ;;
    azure) echo github.com/vmware-tanzu/velero-plugin-for-microsoft-azure ;;
    gcp) echo github.com/vmware-tanzu/velero-plugin-for-gcp ;;
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
  step downloading modules
  new_go_module "$src" vdrill.local/testbed/velero
  gomod=$(go_mod_file "$src" "github.com/vmware-tanzu/velero@$v")
  copy_replaces "$src" "$gomod"   # kopia fork etc.
  apply_go_replaces "$src"
  (cd "$src" && go mod edit -require="github.com/vmware-tanzu/velero@$v" &&
    go get "github.com/vmware-tanzu/velero/cmd/velero@$v")
  hash=$(cd "$src" && go mod download -json "github.com/vmware-tanzu/velero@$v" | jq -r '.Origin.Hash // empty')
  if [[ -n $hash ]]; then ld+=" -X github.com/vmware-tanzu/velero/pkg/buildinfo.GitSHA=$hash"; fi
  step "compiling velero $v"
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
  printf '(checked %s, rm %s to retry): %s' "$(date -r "$1/.unavailable" '+%F %T')" "$1/.unavailable" "$(head -c 500 "$1/.unavailable")"
}

# plugin_pinned NAME: 0 if the plugin comes from the file-based Go module proxy in
# $SHARED/goproxy, with its go.sum lines pinned (SHARED_GOPROXY_PLUGINS in versions.env).
plugin_pinned() { [[ " ${SHARED_GOPROXY_PLUGINS:-} " == *" $1 "* ]]; }

# plugin_go_replaces NAME VERSION: the replaces of that plugin's build module only
# (PLUGIN_GO_REPLACES in versions.env: "<plugin>[@<version>]:<old>@<v>=<new>@<v>"), one a line.
plugin_go_replaces() {
  local r
  for r in ${PLUGIN_GO_REPLACES:-}; do
    case ${r%%:*} in "$1" | "$1@$2") printf '%s\n' "${r#*:}" ;; esac
  done
}

# plugin_inputs NAME VERSION: sets INPUTS (the plugin build's stamp inputs) and, for
# a pinned plugin, P_GOPROXY (shared file proxy first, then the normal one), P_SUMS
# (its pinned go.sum lines, ci/testbed/<plugin>-plugin.sum) and P_REPLACES.
# Plugins that are not pinned keep the inputs they always had.
plugin_inputs() {
  local name=$1 pv=$2 mod goin normal local_proxy; mod=$(plugin_module "$name"); goin=$(go_inputs)
  P_GOPROXY='' P_SUMS='' P_REPLACES=()
  INPUTS=("plugin=$name $pv" "module=$mod" "go=$goin" "ldflags=$GO_LDFLAGS_BASE" "replaces=${GO_REPLACES:-}")
  if ! plugin_pinned "$name"; then
    INPUTS+=("recipe=$(declare -f build_plugin new_go_module go_mod_file copy_replaces apply_go_replaces)")
    return 0
  fi
  normal=$(go env GOPROXY); local_proxy=file://$SHARED/goproxy
  case ,$normal, in *",$local_proxy,"*) P_GOPROXY=$normal ;; *) P_GOPROXY=$local_proxy,$normal ;; esac
  P_SUMS=$HERE/$name-plugin.sum
  [[ -f $P_SUMS ]] || { echo "missing $P_SUMS (the pinned go.sum lines of $mod)" >&2; return 1; }
  mapfile -t P_REPLACES < <(plugin_go_replaces "$name" "$pv")
  INPUTS+=("goproxy=$P_GOPROXY" "sums=$(<"$P_SUMS")" "plugin_replaces=${P_REPLACES[*]}"
    "recipe=$(declare -f build_pinned_plugin new_go_module go_mod_file copy_replaces apply_go_replaces)")
}

# plugin_fetchable NAME VERSION (after plugin_inputs): 0 if built with these inputs
# or the Go proxy serves it (reports UNAVAILABLE otherwise). A refusal is remembered
# with the proxy it came through (DIR/.unavailable.via): another proxy, or the
# shared copy appearing, makes it stale.
plugin_fetchable() {
  local name=$1 pv=$2 mod d err why via hint='' refused=mark_unavailable; mod=$(plugin_module "$name"); d=$(plugin_dir "$name" "$pv")
  if check_stamp "$d" "bin/${mod##*/}"; then rm -f "$d/.unavailable" "$d/.unavailable.via"; return 0; fi
  via="GOPROXY=${P_GOPROXY:-$(go env GOPROXY)}"
  if plugin_pinned "$name"; then
    if [[ -f $SHARED/goproxy/$mod/@v/list ]]; then
      via+=" with $SHARED/goproxy/$mod"
    else
      via+=" without $SHARED/goproxy/$mod"
      hint="the ${name^} plugin needs $SHARED/goproxy (no $mod there; set VDRILL_SHARED, see ci/testbed/NOTES.md) and the Go module proxy refuses it: "
      refused=mark_absent
    fi
  fi
  if [[ -f $d/.unavailable && $(cat "$d/.unavailable.via" 2>/dev/null) != "$via" ]]; then
    log "plugin $name $pv: forgetting the refusal recorded through another proxy"
    rm -f "$d/.unavailable" "$d/.unavailable.via"
  fi
  if why=$(still_unavailable "$d"); then
    report "plugin $name $pv" "UNAVAILABLE $why"
    $refused "plugin $name $pv $why"
    return 1
  fi
  step "checking ${mod##*/} $pv on the Go module proxy${P_GOPROXY:+ ($P_GOPROXY)}"
  local probe=$d/probe.tmp.$$
  mkdir -p "$probe"; printf 'module probe\n' >"$probe/go.mod"
  [[ -z $P_SUMS ]] || cp "$P_SUMS" "$probe/go.sum"
  if ! GOPROXY=${P_GOPROXY:-$(go env GOPROXY)} go_mod_file "$probe" "$mod@$pv" >/dev/null 2>"$probe/err"; then
    err=$hint$(tr '\n\t' '  ' <"$probe/err"); rm -rf "$probe"
    remember_unavailable "$d" "$err"
    printf '%s\n' "$via" >"$d/.unavailable.via"
    report "plugin $name $pv" "UNAVAILABLE: $err"
    $refused "plugin $name $pv: $err"
    return 1
  fi
  rm -rf "$d/.unavailable" "$d/.unavailable.via" "$probe"
}

# build_plugin NAME VERSION DIR BIN LDFLAGS
build_plugin() {
  local name=$1 pv=$2 d=$3 bin=$4 ld=$5 mod src=$3/src gomod; mod=$(plugin_module "$name")
  step "downloading modules for ${mod##*/} $pv"
  new_go_module "$src" "vdrill.local/testbed/plugin-$name"
  gomod=$(go_mod_file "$src" "$mod@$pv")
  copy_replaces "$src" "$gomod"
  apply_go_replaces "$src"
  local pkg=$mod/${mod##*/}   # main package lives in a same-named subdirectory
  (cd "$src" && go mod edit -require="$mod@$pv" && go get "$pkg@$pv")
  step "compiling ${mod##*/} $pv"
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$bin.tmp.$$" "$pkg")
  mv -f "$bin.tmp.$$" "$bin"
}

# build_pinned_plugin NAME VERSION DIR BIN LDFLAGS GOPROXY SUMS [REPLACE...]: as
# build_plugin, for a module the Go proxy here refuses: fetched through GOPROXY
# (the shared file-based proxy first), its go.sum lines pinned from the file SUMS
# (the checksum database has no record of it; every other module is still checked
# against it), each REPLACE (<old>@<v>=<new>@<v>) in this build module only.
# (A function of its own so that the other plugins' stamps stay as they were.)
build_pinned_plugin() {
  local name=$1 pv=$2 d=$3 bin=$4 ld=$5 sums=$7 mod src=$3/src gomod r; mod=$(plugin_module "$name")
  local -x GOPROXY=$6
  shift 7
  step "downloading modules for ${mod##*/} $pv"
  new_go_module "$src" "vdrill.local/testbed/plugin-$name"
  cp "$sums" "$src/go.sum"
  gomod=$(go_mod_file "$src" "$mod@$pv")
  copy_replaces "$src" "$gomod"
  apply_go_replaces "$src"
  for r in "$@"; do (cd "$src" && go mod edit -replace="$r"); done
  local pkg=$mod/${mod##*/}   # main package lives in a same-named subdirectory
  (cd "$src" && go mod edit -require="$mod@$pv" && go get "$pkg@$pv")
  step "compiling ${mod##*/} $pv"
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$bin.tmp.$$" "$pkg")
  mv -f "$bin.tmp.$$" "$bin"
}

# ensure_plugin NAME VERSION (after plugin_inputs and plugin_fetchable); adds to BUILT.
ensure_plugin() {
  local name=$1 pv=$2 mod d bin; mod=$(plugin_module "$name"); d=$(plugin_dir "$name" "$pv")
  bin=$d/bin/${mod##*/}
  if check_stamp "$d" "bin/${mod##*/}"; then report "plugin $name $pv" cached; return 0; fi
  begin_build "$d" "plugin $name $pv"
  if plugin_pinned "$name"; then
    build_pinned_plugin "$name" "$pv" "$d" "$bin" "$GO_LDFLAGS_BASE" "$P_GOPROXY" "$P_SUMS" "${P_REPLACES[@]}"
  else
    build_plugin "$name" "$pv" "$d" "$bin" "$GO_LDFLAGS_BASE"
  fi
  put_stamp "$d"
  report "plugin $name $pv" "built in $(($(now) - T0))s"
  BUILT+=("${mod##*/} $pv")
}

# velero_entry VERSION: its line of VELERO_VERSIONS ("<velero>:<plugin>=<version>...").
velero_entry() {
  local e
  for e in $VELERO_VERSIONS; do [[ ${e%%:*} == "$1" ]] && { echo "$e"; return 0; }; done
  return 1
}

# velero_plugins ENTRY: its "<plugin>=<version>" specs, one a line.
velero_plugins() {
  local spec specs
  IFS=: read -ra specs <<<"${1#*:}"
  for spec in "${specs[@]}"; do
    [[ $spec == "$1" || -z $spec ]] || printf '%s\n' "$spec"
  done
}

# velero_one VERSION: that Velero and its plugins (component velero-<version>).
velero_one() {
  local v=$1 entry d ld spec name pv
  BUILT=()
  if ! entry=$(velero_entry "$v"); then
    # Not pinned: built on demand (see "on-demand Velero versions" below).
    ondemand_entry "$v" || return 0
    entry=$ONDEMAND_ENTRY v=${entry%%:*}
  fi
  d=$(velero_dir "$v"); ld=$(velero_ldflags "$v")
  local goin; goin=$(go_inputs)
  INPUTS=("version=$v" "go=$goin" "ldflags=$ld" "replaces=${GO_REPLACES:-}"
    "recipe=$(declare -f build_velero velero_ldflags new_go_module go_mod_file copy_replaces apply_go_replaces)")
  if check_stamp "$d" bin/velero; then
    report "velero $v" cached
  else
    begin_build "$d" "velero $v"
    build_velero "$v" "$d" "$ld"
    put_stamp "$d"
    report "velero $v" "built in $(($(now) - T0))s"
    BUILT+=("velero $v")
  fi
  local pdir=$d/plugins
  mkdir -p "$pdir" "$pdir.versions"
  for spec in $(velero_plugins "$entry"); do
    name=${spec%%=*} pv=${spec#*=}
    local line lines
    for line in $PLUGIN_LINES; do
      [[ ${line%%:*} == "$(cut -d. -f1,2 <<<"$v")" ]] || continue
      IFS=: read -ra lines <<<"${line#*:}"
      for line in "${lines[@]}"; do
        if [[ ${line%%=*} == "$name" && $pv != "${line#*=}."* ]]; then
          log "plugin $name for velero $v: Velero documents the ${line#*=}.x line, which the Go module proxy refuses; using $pv, the nearest release it serves"
        fi
      done
    done
    plugin_inputs "$name" "$pv"
    if plugin_fetchable "$name" "$pv"; then
      ensure_plugin "$name" "$pv"
      local src; src=$(plugin_dir "$name" "$pv")/bin/$(plugin_module "$name" | sed 's,.*/,,')
      # hard link (plain copy across file systems): velero wants regular executables
      if [[ ! $src -ef $pdir/${src##*/} ]]; then
        local tmp=$pdir/.${src##*/}.tmp.$$
        ln -f "$src" "$tmp" 2>/dev/null || cp -f "$src" "$tmp"
        mv -f "$tmp" "$pdir/${src##*/}"
      fi
      # Versions live beside the plugin dir: Velero warns about every non-executable in it.
      echo "$pv" >"$pdir.versions/$name.tmp.$$"; mv -f "$pdir.versions/$name.tmp.$$" "$pdir.versions/$name"
    else
      # Unavailable now: no binary of an earlier pin or build stays behind for the
      # manifest to list (the built one, if any, is kept in its plugin dir).
      rm -f "$pdir/$(plugin_module "$name" | sed 's,.*/,,')" "$pdir.versions/$name"
    fi
  done
  if ((${#BUILT[@]})); then
    local list; list=$(printf '%s, ' "${BUILT[@]}"); mark_done "built ${list%, }"
  else
    mark_cached
  fi
}

# --- on-demand Velero versions ---------------------------------------------------
#
# A Velero version that VELERO_VERSIONS does not pin (velero@1.18.2, or velero@1.16 for
# the newest served 1.16.x) is built like a pinned one, from the Go module proxy, with
# each plugin at the line PLUGIN_LINES documents for its minor. What was resolved is
# kept in $CACHE/velero/<version>/.on-demand (the entry, as VELERO_VERSIONS would
# spell it), so later runs neither probe nor rebuild; a refusal is remembered 24 h.

# go_served MODULE VERSION [GOPROXY] [SUMS]: 0 if the Go module proxy serves it;
# otherwise 1 with the proxy's answer (one line) on stdout.
go_served() {
  local probe err; probe=$(mktemp -d "$CACHE/.probe.tmp.$$.XXXX")
  printf 'module probe\n' >"$probe/go.mod"
  [[ -z ${4:-} ]] || cp "$4" "$probe/go.sum"
  if GOPROXY=${3:-$(go env GOPROXY)} go_mod_file "$probe" "$1@$2" >/dev/null 2>"$probe/err"; then
    rm -rf "$probe"; return 0
  fi
  err=$(tr '\n\t' '  ' <"$probe/err"); rm -rf "$probe"
  printf '%s' "${err:0:300}"; return 1
}

# minor_of VERSION: v1.18 for 1.18.2, v1.18.2 or v1.18.
minor_of() { local w=${1#v}; cut -d. -f1,2 <<<"v$w"; }

# ondemand_plugin NAME VELERO: the version of plugin NAME for the unpinned VELERO
# (on stdout; 1 and the reason on stderr if there is none).
ondemand_plugin() {
  local name=$1 v=$2 minor line spec pinned_pv='' e patch cand refused=() why
  minor=$(minor_of "$v")
  for spec in $PLUGIN_LINES; do
    [[ ${spec%%:*} == "$minor" ]] || continue
    line=$(velero_plugins "$spec" | sed -n "s/^$name=//p")
  done
  for e in $VELERO_VERSIONS; do
    [[ $(minor_of "${e%%:*}") == "$minor" ]] || continue
    pinned_pv=$(velero_plugins "$e" | sed -n "s/^$name=//p"); break
  done
  if [[ -n ${line:-} ]]; then
    plugin_inputs "$name" "$line.0" >/dev/null
    for patch in 9 8 7 6 5 4 3 2 1 0; do
      cand=$line.$patch
      if [[ -f $(plugin_dir "$name" "$cand")/.ok ]] || go_served "$(plugin_module "$name")" "$cand" "$P_GOPROXY" "$P_SUMS" >/dev/null; then
        if ((${#refused[@]} && patch < 9)); then
          log "plugin $name for velero $v: the newest served patch of the documented $line.x line is $cand (the Go module proxy answers 403 for ${refused[-1]}..$line.9: refused or not released)"
        fi
        echo "$cand"; return 0
      fi
      refused+=("$cand")
    done
    why="Velero documents the $line.x line of the $name plugin for Velero $minor, and the Go module proxy serves none of $line.0..$line.9 (403)"
  else
    why="PLUGIN_LINES in ci/testbed/versions.env names no $name plugin line for Velero $minor"
  fi
  if [[ -n $pinned_pv ]]; then
    log "plugin $name for velero $v: $why; using $pinned_pv, as the pinned Velero $minor does"
    echo "$pinned_pv"; return 0
  fi
  echo "$why, and no Velero $minor is pinned to take its $name plugin from" >&2
  return 1
}

# ondemand_entry VERSION (component velero-<VERSION>, not pinned): sets ONDEMAND_ENTRY
# to "<velero>:<plugin>=<version>..." or reports the component unavailable and returns 1.
ondemand_entry() {
  local want=$1 w=${1#v} v minor d why patch pv err name spec names='' tried=()
  local inputs; inputs=$(stamp_of "$PLUGIN_LINES" "$VELERO_VERSIONS")
  minor=$(minor_of "$want")
  if [[ $w =~ ^[0-9]+\.[0-9]+$ ]]; then
    # A minor: its newest served patch (remembered 24 h).
    local r=$CACHE/velero/.resolved/$minor
    if [[ -f $r ]] && (($(now) - $(stat -c %Y "$r") < 86400)); then
      v=$(<"$r")
    else
      step "looking for the newest Velero $minor.x the Go module proxy serves"
      for patch in 9 8 7 6 5 4 3 2 1 0; do
        if go_served github.com/vmware-tanzu/velero "$minor.$patch" >/dev/null; then v=$minor.$patch; break; fi
        tried+=("$minor.$patch")
      done
      if [[ -z ${v:-} ]]; then
        why="Velero $want is not pinned in ci/testbed/versions.env (pinned: ${PINNED_VELERO[*]}), and the Go module proxy serves no $minor.x release (403 for $minor.0..$minor.9)"
        report "velero $want" "UNAVAILABLE: $why"; mark_unavailable "$why"; return 1
      fi
      mkdir -p "${r%/*}"; echo "$v" >"$r.tmp.$$"; mv -f "$r.tmp.$$" "$r"
    fi
    log "velero $want: not pinned; the newest release of $minor the Go module proxy serves is $v"
  else
    v=v$w
  fi
  d=$(velero_dir "$v")
  if [[ -f $d/.on-demand && $(sed -n 2p "$d/.on-demand") == "$inputs" ]]; then
    ONDEMAND_ENTRY=$(sed -n 1p "$d/.on-demand"); return 0
  fi
  if why=$(still_unavailable "$d"); then
    report "velero $v" "UNAVAILABLE $why"; mark_unavailable "Velero $v $why"; return 1
  fi
  step "checking velero $v on the Go module proxy (not pinned: built on demand)"
  if ! err=$(go_served github.com/vmware-tanzu/velero "$v"); then
    why="Velero $v is not pinned in ci/testbed/versions.env (pinned: ${PINNED_VELERO[*]}) and the Go module proxy does not serve github.com/vmware-tanzu/velero@$v: $err"
    remember_unavailable "$d" "$why"
    report "velero $v" "UNAVAILABLE: $why"; mark_unavailable "$why"; return 1
  fi
  for spec in $PLUGIN_LINES $VELERO_VERSIONS; do
    for name in $(velero_plugins "$spec" | cut -d= -f1); do
      [[ " $names " == *" $name "* ]] || names+=" $name"
    done
  done
  ONDEMAND_ENTRY=$v
  local complete=1
  for name in $names; do
    if pv=$(ondemand_plugin "$name" "$v" 2>&1); then
      ONDEMAND_ENTRY+=":$name=$pv"
    else
      complete=''
      report "plugin $name for velero $v" "UNAVAILABLE: $pv"
      mark_unavailable "plugin $name (for velero $v): $pv"
    fi
  done
  log "velero $v: not pinned, built on demand as $ONDEMAND_ENTRY"
  [[ -n $complete ]] || return 0   # probed again next time
  mkdir -p "$d"
  printf '%s\n%s\n' "$ONDEMAND_ENTRY" "$inputs" >"$d/.on-demand.tmp.$$"
  mv -f "$d/.on-demand.tmp.$$" "$d/.on-demand"
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
  step creating the Python venv
  rm -rf "$d"; mkdir -p "$d"
  "$py" -m venv "$d/venv"
  "$d/venv/bin/python" -m pip install --progress-bar off --disable-pip-version-check --upgrade pip
  step pip install
  "$d/venv/bin/python" -m pip install --progress-bar off --disable-pip-version-check -r "$lock"
  cp "$lock" "$d/requirements.lock.tmp.$$"; mv -f "$d/requirements.lock.tmp.$$" "$d/requirements.lock"
}
do_localstack() {
  local lv d lock py; lv=$(localstack_version); d=$(localstack_dir); lock=$HERE/$LOCALSTACK_LOCK
  py=$(find_python313) || { echo "no python $LOCALSTACK_PYTHON_MINOR (set VDRILL_PYTHON313)" >&2; return 1; }
  local pyv locked; locked=$(<"$lock")
  pyv=$("$py" --version 2>&1) || { echo "$py does not run: $pyv" >&2; return 1; }
  INPUTS=("version=$lv" "lock=$locked" "python=$pyv" "recipe=$(declare -f build_localstack)")
  if check_stamp "$d" venv/bin/python; then report "localstack $lv" cached; mark_cached; return; fi
  begin_build "$d" "localstack $lv"
  build_localstack "$d" "$lock" "$py"
  put_stamp "$d"
  report "localstack $lv" "installed in $(($(now) - T0))s"
  mark_done "installed LocalStack $lv"
}

# --- azurite --------------------------------------------------------------------

azurite_dir() { echo "$CACHE/azurite/$AZURITE_VERSION"; }
# build_azurite DIR: npm ci in a folder of its own, renamed into place.
build_azurite() {
  local d=$1 tmp; tmp=$(dirname "$1")/.${1##*/}.tmp.$$
  step npm ci
  rm -rf "$tmp"; mkdir -p "$tmp"
  cp "$HERE/azurite/package.json" "$HERE/azurite/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error)
  rm -rf "$d"; mv "$tmp" "$d"
}
do_azurite() {
  local d pj pl nv; d=$(azurite_dir)
  pj=$(<"$HERE/azurite/package.json"); pl=$(<"$HERE/azurite/package-lock.json"); nv=$(node --version)
  INPUTS=("version=$AZURITE_VERSION" "package.json=$pj" "package-lock.json=$pl" "node=$nv"
    "recipe=$(declare -f build_azurite)")
  if check_stamp "$d" node_modules/.bin/azurite-blob; then report "azurite $AZURITE_VERSION" cached; mark_cached; return; fi
  begin_build "$d" "azurite $AZURITE_VERSION"
  build_azurite "$d"
  put_stamp "$d"
  report "azurite $AZURITE_VERSION" "installed in $(($(now) - T0))s"
  mark_done "installed Azurite $AZURITE_VERSION"
}

# --- lowkey-vault ---------------------------------------------------------------

lowkey_dir() { echo "$CACHE/lowkey-vault/$LOWKEY_VAULT_VERSION"; }
# Its runnable jar is on no registry here: built from the upstream app sources and
# a pom.xml in $SHARED/sources/lowkey-vault (NOTES.md, "From ../shared").
lowkey_sources() { echo "$SHARED/sources/lowkey-vault"; }

# build_lowkey_vault DIR TARBALL POM: `mvn package` (Java 25, dependencies from Maven
# Central) in a work folder of this run; the jar is moved into DIR, the folder removed.
build_lowkey_vault() {
  local d=$1 tarball=$2 pom=$3 work app; work=$(dirname "$1")/.${1##*/}.build.tmp.$$
  app=$work/lowkey-vault-$LOWKEY_VAULT_VERSION/lowkey-vault-app
  step "unpacking the lowkey-vault $LOWKEY_VAULT_VERSION sources"
  rm -rf "$work"; mkdir -p "$work" "$d"
  tar xzf "$tarball" -C "$work"
  cp "$pom" "$app/pom.xml"
  step "mvn package (Java 25)"
  (cd "$app" && JAVA_HOME=$JAVA25_HOME mvn -B -ntp -Dstyle.color=never package)
  mv -f "$app/target/lowkey-vault-app-$LOWKEY_VAULT_VERSION.jar" "$d/lowkey-vault-app.jar"
  rm -rf "$work"
}

# lowkey_unavailable TEXT: report it (absent: this machine lacks Java 25 or the
# sources) and return 0 (no record kept: nothing remote to spare).
lowkey_unavailable() {
  report "lowkey-vault $LOWKEY_VAULT_VERSION" "UNAVAILABLE: $1"
  mark_absent "$1"
}

do_lowkey_vault() {
  local d label="lowkey-vault $LOWKEY_VAULT_VERSION" src tarball pom java javav major mvnv
  d=$(lowkey_dir); src=$(lowkey_sources)
  tarball=$src/lowkey-vault-$LOWKEY_VAULT_VERSION-app-src.tar.gz; pom=$src/pom.xml
  java=$JAVA25_HOME/bin/java
  # (whole outputs first: `| head -n 1` can kill the writer, and pipefail fails on that)
  if ! javav=$("$java" -version 2>&1) || [[ -z $javav ]]; then
    lowkey_unavailable "no Java 25 at $JAVA25_HOME (JAVA25_HOME in ci/testbed/versions.env): lowkey-vault $LOWKEY_VAULT_VERSION builds and runs only on Java >= 25"
    return 0
  fi
  javav=${javav%%$'\n'*}
  major=$(sed -n 's/^[^"]*"\([0-9]*\).*/\1/p' <<<"$javav")
  if ((${major:-0} < 25)); then
    lowkey_unavailable "$java is not Java >= 25 ($javav; JAVA25_HOME in ci/testbed/versions.env): lowkey-vault $LOWKEY_VAULT_VERSION needs it"
    return 0
  fi
  if [[ ! -f $tarball || ! -f $pom ]]; then
    if [[ -f $d/.ok && -f $d/lowkey-vault-app.jar ]]; then
      # Built earlier from them: keep using it (the jar is the only copy now).
      report "$label" "cached (built earlier; $src is missing, sources not rechecked)"
      mark_cached; return 0
    fi
    local what="$src is missing"
    if [[ -d $src ]]; then what="$src has no $([[ -f $tarball ]] && echo pom.xml || echo "${tarball##*/}")"; fi
    lowkey_unavailable "lowkey-vault $LOWKEY_VAULT_VERSION is built from upstream sources that no registry here serves, and $what (set VDRILL_SHARED to the folder holding sources/lowkey-vault, now $SHARED; see ci/testbed/NOTES.md)"
    return 0
  fi
  mvnv=$(mvn -v 2>&1)
  if [[ $mvnv =~ Apache\ Maven\ [^[:space:]$'\e']+ ]]; then mvnv=${BASH_REMATCH[0]}; else mvnv=${mvnv%%$'\n'*}; fi
  INPUTS=("version=$LOWKEY_VAULT_VERSION" "sources=$(sha256sum <"$tarball" | cut -d' ' -f1)"
    "pom=$(sha256sum <"$pom" | cut -d' ' -f1)" "java=$javav" "maven=$mvnv" "recipe=$(declare -f build_lowkey_vault)")
  if check_stamp "$d" lowkey-vault-app.jar; then report "$label" cached; mark_cached; return 0; fi
  begin_build "$d" "$label"
  build_lowkey_vault "$d" "$tarball" "$pom"
  rm -f "$d/.unavailable"
  put_stamp "$d"
  report "$label" "built in $(($(now) - T0))s"
  mark_done "built lowkey-vault $LOWKEY_VAULT_VERSION (Maven, Java 25)"
}

# --- fake-gcs-server ------------------------------------------------------------

fake_gcs_dir() { echo "$CACHE/fake-gcs-server/$FAKE_GCS_VERSION"; }
# build_fake_gcs DIR LDFLAGS: its main package is the module's root.
build_fake_gcs() {
  local d=$1 ld=$2 src=$1/src
  step downloading modules
  new_go_module "$src" vdrill.local/testbed/fake-gcs-server
  (cd "$src" && go get "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION")
  step "compiling fake-gcs-server $FAKE_GCS_VERSION"
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$d/bin/fake-gcs-server.tmp.$$" github.com/fsouza/fake-gcs-server)
  mv -f "$d/bin/fake-gcs-server.tmp.$$" "$d/bin/fake-gcs-server"
}
do_fake_gcs() {
  local d ld=$GO_LDFLAGS_BASE goin; d=$(fake_gcs_dir); goin=$(go_inputs)
  INPUTS=("version=$FAKE_GCS_VERSION" "go=$goin" "ldflags=$ld" "recipe=$(declare -f build_fake_gcs new_go_module)")
  if check_stamp "$d" bin/fake-gcs-server; then report "fake-gcs-server $FAKE_GCS_VERSION" cached; mark_cached; return; fi
  begin_build "$d" "fake-gcs-server $FAKE_GCS_VERSION"
  build_fake_gcs "$d" "$ld"
  put_stamp "$d"
  report "fake-gcs-server $FAKE_GCS_VERSION" "built in $(($(now) - T0))s"
  mark_done "built fake-gcs-server $FAKE_GCS_VERSION"
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
  local entry v vd pdir plugins f pinned
  for entry in $VELERO_VERSIONS "$CACHE"/velero/v*/.on-demand; do
    pinned=true
    if [[ $entry == */.on-demand ]]; then
      [[ -f $entry ]] || continue
      pinned=false; entry=$(sed -n 1p "$entry")
      ! velero_entry "${entry%%:*}" >/dev/null || continue
    fi
    v=${entry%%:*}; vd=$(velero_dir "$v"); pdir=$vd/plugins
    [[ -f $vd/.ok ]] || continue
    plugins='{}'
    rm -f "$pdir"/.*.version   # left by earlier versions of this script
    for f in "$pdir.versions"/*; do
      [[ -f $f ]] || continue
      plugins=$(jq --arg n "${f##*/}" --arg pv "$(cat "$f")" '.[$n] = $pv' <<<"$plugins")
    done
    j=$(jq --arg v "$v" --arg b "$vd/bin/velero" --arg p "$pdir" --argjson pl "$plugins" --argjson pin "$pinned" \
      '.velero += [{version: $v, bin: $b, plugin_dir: $p, plugins: $pl, pinned: $pin}]' <<<"$j")
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
  if [[ -f $lk/.ok && -x $JAVA25_HOME/bin/java ]]; then
    j=$(jq --arg v "$LOWKEY_VAULT_VERSION" --arg jar "$lk/lowkey-vault-app.jar" --arg java "$JAVA25_HOME/bin/java" \
      '.lowkey_vault = {version: $v, jar: $jar, java: $java}' <<<"$j")
  fi
  local fg; fg=$(fake_gcs_dir)
  if [[ -f $fg/.ok ]]; then
    j=$(jq --arg v "$FAKE_GCS_VERSION" --arg b "$fg/bin/fake-gcs-server" '.fake_gcs = {version: $v, bin: $b}' <<<"$j")
  fi
  j=$(kind_manifest "$j")
  j=$(images_manifest "$j")
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
    event setup wait "for $holder"
    flock 9
    log "got the lock after $(($(now) - t0))s"
  fi
  printf 'pid=%s\nstarted=%s\nhost=%s\ncomponents=%s\ncommand=%s\n' \
    "$$" "$T_START" "$HOSTNAME" "$components" "$0${*:+ $*}" >"$OWNER_FILE.tmp.$$"
  mv -f "$OWNER_FILE.tmp.$$" "$OWNER_FILE"
  LOCKED=1
}

# sweep_temps [PID]: remove temp outputs (*.tmp.<pid>) of runs that died (or of
# this one, at exit). Only with the lock held: then no other run is writing any.
sweep_temps() {
  find "$CACHE" -maxdepth 5 \( -name venv -o -name node_modules -o -name src \) -prune \
    -o -name "*.tmp.${1:-[0-9]*}" -prune -exec rm -rf {} + 2>/dev/null || true
}

# --- components -------------------------------------------------------------------

PINNED_VELERO=()
for entry in $VELERO_VERSIONS; do PINNED_VELERO+=("${entry%%:*}"); done

# velero_matching VERSION: sets MATCHED to the pinned Velero that VERSION (1.18,
# v1.18: the newest pinned v1.18.x; 1.18.3, v1.18.3: that one) means, else to
# v<VERSION>, built on demand; exits 2 if VERSION is not a version.
velero_matching() {
  local want=$1 w=${1#v} v have best=''
  [[ $w =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] ||
    usage_error "velero@$want: expected velero@<major>.<minor>[.<patch>], e.g. velero@1.18 or velero@v1.18.3"
  for v in "${PINNED_VELERO[@]}"; do
    have=${v#v}
    if [[ $have == "$w" || $have == "$w".* ]]; then
      if [[ -z $best || $(printf '%s\n' "${best#v}" "$have" | sort -V | tail -n 1) == "$have" ]]; then best=$v; fi
    fi
  done
  # Not pinned: built on demand (ondemand_entry), as v<major>.<minor>[.<patch>].
  MATCHED=${best:-v$w}
}

cold_seconds() {
  case $1 in velero-*) echo "${COLD_SECONDS[velero]}" ;; *) echo "${COLD_SECONDS[$1]}" ;; esac
}

what_of() {
  case $1 in
    kube) echo "kube-apiserver and kube-controller-manager $KUBE_VERSION" ;;
    etcd) echo "etcd $ETCD_VERSION" ;;
    velero-*)
      local v=${1#velero-} list entry
      if ! entry=$(velero_entry "$v"); then
        echo "velero $v (not pinned: built on demand, with the plugin lines Velero documents)"; return 0
      fi
      list=$(velero_plugins "$entry" | sed 's/=/ /' | paste -sd, | sed 's/,/, /g')
      echo "velero $v${list:+ with plugins $list}" ;;
    localstack) echo "LocalStack $(localstack_version) (Python venv)" ;;
    azurite) echo "Azurite $AZURITE_VERSION (npm)" ;;
    lowkey-vault) echo "lowkey-vault $LOWKEY_VAULT_VERSION (Maven build with Java 25, sources from $(lowkey_sources))" ;;
    fake-gcs) echo "fake-gcs-server $FAKE_GCS_VERSION (GCS emulator)" ;;
    kind) echo "kind $KIND_VERSION (CLI)" ;;
    images) echo "Velero, plugin, workload and LocalStack images for kind cells" ;;
    kind-node) echo "kind node image $KIND_NODE_IMAGE (Debian $KIND_NODE_SUITE, kubelet, CoreDNS, local-path-provisioner)" ;;
  esac
}

need_for() {
  case $1 in
    kube | etcd | velero-* | fake-gcs | kind) need go ;;
    kind-node) need go debootstrap gcc python3 dockerd ;;
    images) need go debootstrap python3 dockerd ;;
    azurite) need node npm ;;
    lowkey-vault) need mvn ;;
  esac
}

# VDRILL_SETUP_DELAY=<component>:<seconds>[,...] (for tests): sleep that long in
# the component (velero: every velero-<version>), cached or not.
delay_of() {
  local e es
  IFS=, read -ra es <<<"${VDRILL_SETUP_DELAY:-}"
  for e in "${es[@]}"; do
    if [[ ${e%%:*} == "$1" || (${e%%:*} == velero && $1 == velero-*) ]]; then echo "${e##*:}"; return 0; fi
  done
  return 0
}
test_delay() {
  local s; s=$(delay_of "$1")
  [[ -n $s ]] || return 0
  step "test delay (VDRILL_SETUP_DELAY)"
  sleep "$s"
}

# failure_summary LOG STATUS: one line for the `failed` event.
failure_summary() {
  local where what
  where=$(sed -n 's/^== step: //p' "$1" | tail -n 1)
  what=$(grep -v -e '^== ' -e '^[[:space:]]*$' "$1" | tail -n 1 | tr '\t\r' '  ' | cut -c1-200 || true)
  printf 'exit %s%s: %s' "$2" "${where:+ while $where}" "${what:-no output}"
}

# run_component ID: provision one component in a subshell of its own, its output
# to $LOGS/ID.log (opened by begin_build: a cached component keeps its last log).
# Sets RC=1 if it fails. Never call it from a condition: the subshell relies on errexit.
run_component() {
  local c=$1 fn st msg
  COMP=$c LOG=$LOGS/$c.log LOG_TMP=$LOGS/$c.attempt.tmp.$$ LOG_OPEN=''
  case $c in velero-*) fn=(velero_one "${c#velero-}") ;; *) fn=("do_${c//-/_}") ;; esac
  event "$c" start "$(cold_seconds "$c")" "$(what_of "$c")"
  set +e
  (set -e; test_delay "$c"; need_for "$c"; COMP_T0=$(now); "${fn[@]}") >"$LOG_TMP" 2>&1
  st=$?
  set -e
  if [[ -e $LOG_TMP ]]; then   # it did not get to building
    if ((st != 0)); then
      { printf '== %s: failed before any build started, at %s, setup.sh pid %s\n' "$c" "$(date '+%F %T %z')" "$$"
        cat "$LOG_TMP"; } >"$LOG.tmp.$$"
      mv -f "$LOG.tmp.$$" "$LOG"
    fi
    rm -f "$LOG_TMP"
  fi
  ((st != 0)) || return 0
  RC=1
  msg=$(failure_summary "$LOG" "$st")
  event "$c" failed "$LOG" "$msg"
  report "$c" "FAILED: $msg (log: $LOG)"
  log "last lines of $LOG:"
  tail -n 20 "$LOG" | sed 's/^/    /' >&4
}

# --- main -----------------------------------------------------------------------

ARGS=("$@")
components=("$@")
((${#components[@]})) || read -ra components <<<"$ALL_COMPONENTS"
JOBS=()
add_job() {
  local j
  for j in "${JOBS[@]}"; do [[ $j != "$1" ]] || return 0; done
  JOBS+=("$1")
}
for c in "${components[@]}"; do
  case $c in
    kube | etcd | localstack | azurite | lowkey-vault | fake-gcs | kind) add_job "$c" ;;
    kind-node) add_job kube; add_job etcd; add_job kind-node ;;   # it reuses their binaries
    images)   # it reuses Velero's and the plugins' builds and the node's Debian rootfs
      for v in "${PINNED_VELERO[@]}"; do add_job "velero-$v"; done
      add_job kube; add_job etcd; add_job kind-node; add_job images ;;
    velero) for v in "${PINNED_VELERO[@]}"; do add_job "velero-$v"; done ;;
    velero@*) velero_matching "${c#velero@}"; add_job "velero-$MATCHED" ;;
    *) usage_error "unknown component '$c' (known: $ALL_COMPONENTS velero@<version>)" ;;
  esac
done
IFS=, read -ra delays <<<"${VDRILL_SETUP_DELAY:-}"
for d in "${delays[@]}"; do
  [[ $d =~ ^[a-z0-9.-]+:[0-9]+([.][0-9]+)?$ ]] || usage_error "VDRILL_SETUP_DELAY: '$d' is not <component>:<seconds>"
done

need jq curl flock
log "cache: $CACHE"
take_lock "${JOBS[*]}" "${ARGS[@]}"
sweep_temps
mkdir -p "$LOGS"
RC=0
for c in "${JOBS[@]}"; do run_component "$c"; done
write_manifest

{
  echo "== vdrill test bed ($CACHE) =="
  sed 's/^/  /' "$SUMMARY_FILE"
  echo "  manifest: $CACHE/testbed.json"
  echo "  logs: $LOGS"
  echo "  total: $(($(now) - T_START))s"
} >&4
exit $RC
