# shellcheck shell=bash
# shellcheck disable=SC2317,SC2016 # (info) functions run indirectly are not unreachable; Go backquotes
# kind and its node image, built from the registries (sourced by ci/testbed/setup.sh,
# which provides step, report, check_stamp, begin_build, put_stamp, go_inputs, ...).
#
# Components:
#   kind       the kind CLI ($KIND_VERSION), `go install sigs.k8s.io/kind@...`
#   kind-node  the node image $KIND_NODE_IMAGE for $KUBE_VERSION, no registry involved:
#              a Debian rootfs (debootstrap) with systemd, containerd, runc, iptables and
#              the CNI plugins, kind's own base files (from the kind module zip), kubeadm,
#              kubelet and kubectl, and every image kubeadm and kind's default storage
#              need, as docker-save archives imported into the node's containerd at boot.
#              Pieces (each its own stamp, under $CACHE/kind-node/):
#                rootfs/<suite>/rootfs.tar      debootstrap
#                kube/<version>/bin/            kubeadm kubelet kubectl kube-scheduler kube-proxy
#                coredns/<version>/bin/coredns
#                local-path-provisioner/<version>/bin/local-path-provisioner
#                <kube version>/node.tar        the node image (docker-save), check.tar (busybox)
#              kube-apiserver and kube-controller-manager come from the `kube` component,
#              etcd from `etcd`. Setup then makes sure the bed's dockerd runs
#              (ci/testbed/docker.sh start) and has the node image (docker load).
#
# Pod networking: a static CNI config (ptp + host-local on the node's pod CIDR, IP
# masquerade in the node) instead of kindnetd; see kind-cluster.yaml for why.

KIND_NODE_IMAGE=vdrill.local/kind-node:$KUBE_VERSION
# Names of the images built here that no upstream image name stands for.
KIND_STORAGE_IMAGE=vdrill.local/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION
KIND_HELPER_IMAGE=vdrill.local/local-path-helper:busybox
KIND_CHECK_IMAGE=vdrill.local/kind-check:busybox
# The node's pod range: the /24 the controller-manager gives the first node of the
# podSubnet in kind-cluster.yaml (10.244.0.0/16), used by the static CNI config.
KIND_NODE_POD_CIDR=10.244.0.0/24
# The serviceSubnet of kind-cluster.yaml.
KIND_NODE_SERVICE_CIDR=10.96.0.0/16

kind_dir() { echo "$CACHE/kind/$KIND_VERSION"; }
kind_node_root() { echo "$CACHE/kind-node"; }
kind_node_dir() { echo "$(kind_node_root)/$KUBE_VERSION"; }

# go_mod_dir MODULE@VERSION: the module's unpacked folder in the module cache.
go_mod_dir() {
  local probe out dir; probe=$(mktemp -d "$CACHE/.probe.tmp.$$.XXXX")
  printf 'module probe\n' >"$probe/go.mod"
  out=$(cd "$probe" && go mod download -json "$1") || { rm -rf "$probe"; echo "go mod download $1 failed: $out" >&2; return 1; }
  rm -rf "$probe"
  dir=$(jq -r '.Dir // empty' <<<"$out")
  [[ -n $dir ]] || { echo "go mod download $1: $(jq -r '.Error // "no Dir"' <<<"$out")" >&2; return 1; }
  printf '%s\n' "$dir"
}

# --- kind CLI -------------------------------------------------------------------

# build_kind DIR LDFLAGS
build_kind() {
  local d=$1 ld=$2 tmp=$1/bin.tmp.$$
  step "go install sigs.k8s.io/kind@$KIND_VERSION"
  rm -rf "$tmp"; mkdir -p "$tmp" "$d/bin"
  GOBIN=$tmp go install -trimpath -ldflags="$ld" "sigs.k8s.io/kind@$KIND_VERSION"
  mv -f "$tmp/kind" "$d/bin/kind"
  rmdir "$tmp"
}
do_kind() {
  local d ld=$GO_LDFLAGS_BASE goin; d=$(kind_dir); goin=$(go_inputs)
  INPUTS=("version=$KIND_VERSION" "go=$goin" "ldflags=$ld" "recipe=$(declare -f build_kind)")
  if check_stamp "$d" bin/kind; then report "kind $KIND_VERSION" cached; mark_cached; return; fi
  begin_build "$d" "kind $KIND_VERSION"
  build_kind "$d" "$ld"
  put_stamp "$d"
  report "kind $KIND_VERSION" "built in $(($(now) - T0))s"
  mark_done "built kind $KIND_VERSION"
}

# --- kind-node pieces -----------------------------------------------------------
#
# piece LABEL DIR FILE... -- BUILD-COMMAND...: build one piece unless its stamp (INPUTS)
# matches; records its time in PIECES (for the summary and NOTES.md).
piece() {
  local label=$1 d=$2 files=() t0; shift 2
  while [[ $1 != -- ]]; do files+=("$1"); shift; done
  shift
  if check_stamp "$d" "${files[@]}"; then report "  $label" cached; PIECES+=("$label cached"); return 0; fi
  log "$label: $WHY, building (output: $LOG)"
  open_log
  printf '== %s: build at %s (%s); stamp %s; inputs: %s\n' "$label" "$(date '+%F %T %z')" "$WHY" "$STAMP" "$(inputs_line "${INPUTS[@]}")"
  mkdir -p "$d"; rm -f "$d/.ok" "$d/.ok.inputs"
  t0=$(now)
  "$@"
  put_stamp "$d"
  report "  $label" "built in $(($(now) - t0))s"
  PIECES+=("$label $(($(now) - t0))s")
}

# open_log: this run's output becomes the component's log (as begin_build does; a
# run that only finds everything cached keeps the last log).
open_log() {
  if [[ -z $LOG_OPEN ]]; then mv -f "$LOG_TMP" "$LOG"; LOG_OPEN=1; fi
}

# build_node_rootfs DIR: debootstrap into a folder of this run, kept as a tar
# (owners and modes as Debian set them).
build_node_rootfs() {
  local d=$1 tmp=$1/rootfs.tmp.$$
  step "debootstrap $KIND_NODE_SUITE (minbase with systemd, containerd, runc, iptables, CNI plugins)"
  rm -rf "$tmp"; mkdir -p "$tmp"
  debootstrap --variant=minbase --include="$KIND_NODE_PACKAGES" "$KIND_NODE_SUITE" "$tmp" "$KIND_NODE_MIRROR"
  rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* "$tmp"/var/log/*.log
  tar --numeric-owner -C "$tmp" -cf "$d/rootfs.tar.tmp.$$" .
  mv -f "$d/rootfs.tar.tmp.$$" "$d/rootfs.tar"
  rm -rf "$tmp"
}

# build_node_kube DIR LDFLAGS: kubeadm, kubelet, kubectl, kube-scheduler and kube-proxy
# in the build module of the `kube` component (its go.mod: the staging replaces).
build_node_kube() {
  local d=$1 ld=$2 src=$1/src c tmp=$1/bin.tmp.$$ pkgs=()
  step "downloading modules (the kube component's module)"
  rm -rf "$src"; mkdir -p "$src"
  cp "$(kube_dir)/src/go.mod" "$(kube_dir)/src/go.sum" "$src/"
  for c in $KIND_NODE_KUBE_CMDS; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$src" && go get "${pkgs[@]/%/@$KUBE_VERSION}")
  step "compiling $KIND_NODE_KUBE_CMDS"
  rm -rf "$tmp"; mkdir -p "$tmp" "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$tmp/" "${pkgs[@]}")
  for c in $KIND_NODE_KUBE_CMDS; do mv -f "$tmp/$c" "$d/bin/$c"; done
  rmdir "$tmp"
}

# build_go_main DIR NAME MODULE VERSION LDFLAGS: a module whose root is its main package
# (CoreDNS, local-path-provisioner), with the module's own versioned replaces repeated.
build_go_main() {
  local d=$1 name=$2 mod=$3 v=$4 ld=$5 src=$1/src gomod
  step "downloading modules for $mod $v"
  new_go_module "$src" "vdrill.local/testbed/$name"
  gomod=$(go_mod_file "$src" "$mod@$v")
  copy_replaces "$src" "$gomod"
  (cd "$src" && go mod edit -require="$mod@$v" && go get "$mod@$v")
  step "compiling $name $v"
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$d/bin/$name.tmp.$$" "$mod")
  mv -f "$d/bin/$name.tmp.$$" "$d/bin/$name"
}

# --- kind-node image ------------------------------------------------------------

# layer_of DIR OUT: an image layer (tar) of the folder DIR, owned by root.
layer_of() { tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$1" -cf "$2" .; }

# image_archive OUT TAG LAYER-DIR [image-archive.py options]: one-layer docker-save archive.
image_archive() {
  local out=$1 tag=$2 dir=$3; shift 3
  layer_of "$dir" "$out.layer"
  python3 "$HERE/image-archive.py" --layer "$out.layer" --tag "$tag" --out "$out" "$@" >/dev/null
  rm -f "$out.layer"
}

# copy_exec ROOT DEST FILE...: FILEs of the rootfs ROOT (and the shared libraries they
# load) into the folder DEST, same paths.
copy_exec() {
  local root=$1 dest=$2 f lib; shift 2
  for f in "$@"; do
    mkdir -p "$dest/$(dirname "$f")"
    cp -a "$root/$f" "$dest/$f"
    # ldd through the rootfs's own loader: the libraries of its Debian release
    for lib in $(chroot "$root" ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
      [[ -e $dest/$lib ]] && continue
      mkdir -p "$dest/$(dirname "$lib")"
      cp -aL "$root/$lib" "$dest/$lib"
    done
  done
}

# busybox_tree ROOT DIR: Debian's static busybox with a link per applet in DIR/bin.
busybox_tree() {
  local root=$1 dir=$2 a
  mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc"; chmod 1777 "$dir/tmp"
  cp "$root/usr/bin/busybox" "$dir/bin/busybox"
  for a in $("$dir/bin/busybox" --list); do [[ $a == busybox ]] || ln -sf busybox "$dir/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$dir/etc/group"
}

# node_images ROOT IMAGES-DIR: the images the node needs, as docker-save archives in
# IMAGES-DIR (imported by the node's import-images.service at boot).
node_images() {
  local root=$1 out=$2 w=$2.work kb kn cb lb name tag pause
  kb=$(kube_dir)/bin kn=$(kind_node_root)/kube/$KUBE_VERSION/bin
  cb=$(kind_node_root)/coredns/$COREDNS_VERSION/bin lb=$(kind_node_root)/local-path-provisioner/$LOCAL_PATH_PROVISIONER_VERSION/bin
  rm -rf "$w"; mkdir -p "$w" "$out"
  # kubeadm decides the names and tags (pause, etcd, CoreDNS versions of this release)
  local -A want=()
  while read -r tag; do
    name=${tag##*/}; name=${name%%:*}
    want[$name]=$tag
  done < <("$kn/kubeadm" config images list --kubernetes-version "$KUBE_VERSION")
  [[ ${want[coredns]:-} == *":$COREDNS_VERSION" ]] ||
    { echo "kubeadm $KUBE_VERSION expects ${want[coredns]:-no CoreDNS}, versions.env pins COREDNS_VERSION=$COREDNS_VERSION" >&2; return 1; }
  KIND_NODE_PAUSE=${want[pause]}
  step "writing the images kubeadm expects: ${want[*]}"
  for name in kube-apiserver kube-controller-manager kube-scheduler etcd; do
    mkdir -p "$w/$name/usr/local/bin" "$w/$name/tmp"; chmod 1777 "$w/$name/tmp"
    case $name in
      kube-apiserver | kube-controller-manager) cp "$kb/$name" "$w/$name/usr/local/bin/" ;;
      kube-scheduler) cp "$kn/$name" "$w/$name/usr/local/bin/" ;;
      etcd) cp "$(etcd_dir)/bin/etcd" "$w/$name/usr/local/bin/" ;;
    esac
    image_archive "$out/$name.tar" "${want[$name]}" "$w/$name"
  done
  # kube-proxy execs iptables(-save,-restore): Debian's, with the libraries and
  # extensions they load, behind a wrapper that uses the backend the node uses.
  local p=$w/kube-proxy
  mkdir -p "$p/usr/local/bin" "$p/usr/sbin" "$p/run" "$p/tmp"
  cp "$kn/kube-proxy" "$p/usr/local/bin/"
  busybox_tree "$root" "$p"
  local xt=()
  mapfile -t xt < <(cd "$root" && find usr/lib/x86_64-linux-gnu/xtables -name '*.so' | sed 's,^,/,')
  copy_exec "$root" "$p" /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi "${xt[@]}"
  local s
  for s in "" -save -restore; do
    ln -sf xtables-nft-multi "$p/usr/sbin/iptables-nft$s"; ln -sf xtables-nft-multi "$p/usr/sbin/ip6tables-nft$s"
    ln -sf xtables-legacy-multi "$p/usr/sbin/iptables-legacy$s"; ln -sf xtables-legacy-multi "$p/usr/sbin/ip6tables-legacy$s"
    ln -sf iptables-wrapper "$p/usr/sbin/iptables$s"; ln -sf iptables-wrapper "$p/usr/sbin/ip6tables$s"
  done
  cat >"$p/usr/sbin/iptables-wrapper" <<'EOF'
#!/bin/busybox sh
# vdrill: pick the iptables backend the node uses (as kubernetes-sigs/iptables-wrappers
# does): the one holding kubelet's KUBE-IPTABLES-HINT chain, else the one with more
# rules; then point the iptables names at it for good and run the command.
set -e
if (iptables-nft-save -t mangle 2>/dev/null || true) | busybox grep -q KUBE-IPTABLES-HINT; then mode=nft
elif (iptables-legacy-save -t mangle 2>/dev/null || true) | busybox grep -q KUBE-IPTABLES-HINT; then mode=legacy
else
  l=$( (iptables-legacy-save; ip6tables-legacy-save) 2>/dev/null | busybox grep -c '^-' || true)
  n=$( (iptables-nft-save; ip6tables-nft-save) 2>/dev/null | busybox grep -c '^-' || true)
  if [ "${l:-0}" -gt "${n:-0}" ]; then mode=legacy; else mode=nft; fi
fi
for b in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  case $b in ip6*) t=ip6tables-$mode${b#ip6tables} ;; *) t=iptables-$mode${b#iptables} ;; esac
  busybox ln -sf "$t" "/usr/sbin/$b"
done
exec "/usr/sbin/${0##*/}" "$@"
EOF
  chmod 0755 "$p/usr/sbin/iptables-wrapper"
  image_archive "$out/kube-proxy.tar" "${want[kube-proxy]}" "$p"
  # pause: static build of the C file in the kubernetes module
  pause=$w/pause; mkdir -p "$pause"
  gcc -Os -static -o "$pause/pause" "$(go_mod_dir "k8s.io/kubernetes@$KUBE_VERSION")/build/pause/linux/pause.c"
  strip "$pause/pause"
  image_archive "$out/pause.tar" "${want[pause]}" "$pause" --entrypoint '["/pause"]'
  mkdir -p "$w/coredns"; cp "$cb/coredns" "$w/coredns/coredns"
  image_archive "$out/coredns.tar" "${want[coredns]}" "$w/coredns" --entrypoint '["/coredns"]'
  # kind's default storage: local-path-provisioner and its helper (sh, mkdir, rm)
  mkdir -p "$w/lpp/usr/local/bin" "$w/lpp/tmp"; chmod 1777 "$w/lpp/tmp"
  cp "$lb/local-path-provisioner" "$w/lpp/usr/local/bin/"
  image_archive "$out/local-path-provisioner.tar" "$KIND_STORAGE_IMAGE" "$w/lpp"
  busybox_tree "$root" "$w/busybox"
  image_archive "$out/local-path-helper.tar" "$KIND_HELPER_IMAGE" "$w/busybox"
  rm -rf "$w"
}

# storage_manifest KIND-MODULE-DIR: kind's default storage manifest (the text of the kind
# release's pkg/build/nodeimage/const_storage.go) with this bed's image names.
storage_manifest() {
  local text
  text=$(sed -n '/^const defaultStorageManifest = `$/,/^`$/p' "$1/pkg/build/nodeimage/const_storage.go" | sed '1d;$d')
  text=${text//'` + storageProvisionerImage + `'/$KIND_STORAGE_IMAGE}
  text=${text//'` + storageHelperImage + `'/$KIND_HELPER_IMAGE}
  [[ -n $text && $text != *'` +'* ]] || { echo "cannot read the storage manifest of $1 (const_storage.go changed?)" >&2; return 1; }
  printf '%s\n' "$text"
}

# build_node_image DIR ROOTFS-TAR: the node image as a docker-save archive DIR/node.tar
# (and the check image DIR/check.tar, busybox for kind-check.sh and the like).
build_node_image() {
  local d=$1 rootfs=$2 w=$1/work.tmp.$$ root kindmod f
  root=$w/root
  step "unpacking the node rootfs"
  rm -rf "$w"; mkdir -p "$root"
  tar --numeric-owner -xpf "$rootfs" -C "$root"
  kindmod=$(go_mod_dir "sigs.k8s.io/kind@$KIND_VERSION")
  node_images "$root" "$w/images"
  step "kind's base files and settings"
  # As kind's images/base/Dockerfile, from its module: entrypoint, units, sysctls, config.
  local b=$kindmod/images/base/files
  install -m 0755 -D -t "$root/usr/local/bin" "$b"/usr/local/bin/*
  mkdir -p "$root/kind/bin" "$root/etc/containerd" "$root/etc/default" "$root/etc/sysctl.d" \
    "$root/etc/systemd/system/kubelet.service.d" "$root/etc/kubernetes/manifests" "$root/kind/manifests" "$root/kind/images"
  install -m 0644 "$b"/kind/README.txt "$root/kind/"
  install -m 0755 "$b"/kind/bin/* "$root/kind/bin/"
  install -m 0644 "$b"/etc/crictl.yaml "$root/etc/"
  install -m 0644 "$b"/etc/default/* "$root/etc/default/"
  install -m 0644 "$b"/etc/sysctl.d/* "$root/etc/sysctl.d/"
  for f in containerd.service kubelet.service kubelet.slice undo-mount-hacks.service; do
    install -m 0644 "$b/etc/systemd/system/$f" "$root/etc/systemd/system/"
  done
  install -m 0644 "$b"/etc/systemd/system/kubelet.service.d/* "$root/etc/systemd/system/kubelet.service.d/"
  # containerd: Debian's (the unit runs /usr/local/bin/containerd); no fuse-overlayfs
  # snapshotter and no base runtime spec (kind builds them; unused here); the sandbox
  # image kubeadm expects; restrict_oom_score_adj: where root lacks CAP_SYS_RESOURCE a
  # lower oom_score_adj is refused and every sandbox would fail to start.
  ln -sf /usr/bin/containerd "$root/usr/local/bin/containerd"
  sed -e '/^\[proxy_plugins\]/,/^$/d' -e '/base_runtime_spec/d' \
    -e "s|^\( *sandbox_image = \).*|\1\"$KIND_NODE_PAUSE\"|" \
    -e 's|^\( *restrict_oom_score_adj = \).*|\1true|' "$b/etc/containerd/config.toml" >"$root/etc/containerd/config.toml"
  grep -q "sandbox_image = \"$KIND_NODE_PAUSE\"" "$root/etc/containerd/config.toml"
  grep -q 'restrict_oom_score_adj = true' "$root/etc/containerd/config.toml"
  # CNI plugins where containerd looks for them; the one network of the node
  mkdir -p "$root/opt/cni" "$root/etc/cni/net.d"
  ln -sfn /usr/lib/cni "$root/opt/cni/bin"
  cat >"$root/etc/cni/net.d/10-vdrill-ptp.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "vdrill-ptp",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": true,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$KIND_NODE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "/run/cni-ipam-state"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # images: imported into containerd before kubelet starts
  cp "$w"/images/*.tar "$root/kind/images/"
  cat >"$root/etc/systemd/system/import-images.service" <<'EOF'
[Unit]
Description=Import the node's images into containerd (vdrill: no registry)
After=containerd.service
Requires=containerd.service
Before=kubelet.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for t in /kind/images/*.tar; do ctr -n k8s.io images import --no-unpack=false "$t" >/dev/null || exit 1; done; rm -f /kind/images/*.tar'
[Install]
WantedBy=multi-user.target
EOF
  # Until kube-proxy has programmed a Service, a connection to its ClusterIP leaves by
  # the default route and is dropped on the host (no forwarding there): CoreDNS's first
  # list of the API then waits out a 30 s dial timeout. Refused at once, it retries.
  cat >"$root/etc/systemd/system/refuse-unprogrammed-services.service" <<EOF
[Unit]
Description=Refuse connections to Service IPs kube-proxy has not programmed yet (vdrill)
Before=kubelet.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/iptables -A FORWARD -d $KIND_NODE_SERVICE_CIDR -p tcp -j REJECT --reject-with tcp-reset
ExecStart=/usr/sbin/iptables -A FORWARD -d $KIND_NODE_SERVICE_CIDR -j REJECT
[Install]
WantedBy=multi-user.target
EOF
  install -m 0755 "$(kind_node_root)/kube/$KUBE_VERSION/bin/kubeadm" "$(kind_node_root)/kube/$KUBE_VERSION/bin/kubelet" \
    "$(kind_node_root)/kube/$KUBE_VERSION/bin/kubectl" "$root/usr/bin/"
  printf '%s\n' "$KUBE_VERSION" >"$root/kind/version"
  storage_manifest "$kindmod" >"$root/kind/manifests/default-storage.yaml"
  # systemd in a container, as kind's base image sets it up
  rm -f "$root"/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service \
    "$root"/lib/systemd/system/multi-user.target.wants/* "$root"/etc/systemd/system/*.wants/* \
    "$root"/lib/systemd/system/local-fs.target.wants/* "$root"/lib/systemd/system/sockets.target.wants/*udev* \
    "$root"/lib/systemd/system/sockets.target.wants/*initctl* "$root"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"$root/etc/systemd/journald.conf"
  ln -sf /usr/lib/systemd/systemd "$root/sbin/init"
  systemctl --root="$root" enable kubelet.service containerd.service undo-mount-hacks.service import-images.service \
    refuse-unprogrammed-services.service
  # no kernel modules can be loaded in a node (nor binfmt registered)
  systemctl --root="$root" mask systemd-binfmt.service systemd-modules-load.service
  : >"$root/etc/machine-id"
  step "writing the node image"
  layer_of_root "$root" "$w/node.layer"
  python3 "$HERE/image-archive.py" --layer "$w/node.layer" --tag "$KIND_NODE_IMAGE" --out "$d/node.tar.tmp.$$" \
    --entrypoint '["/usr/local/bin/entrypoint", "/sbin/init"]' --env container=docker \
    --stop-signal 'SIGRTMIN+3' >"$d/node.id.tmp.$$"
  busybox_tree "$root" "$w/check"
  image_archive "$d/check.tar.tmp.$$" "$KIND_CHECK_IMAGE" "$w/check"
  mv -f "$d/check.tar.tmp.$$" "$d/check.tar"
  mv -f "$d/node.tar.tmp.$$" "$d/node.tar"
  mv -f "$d/node.id.tmp.$$" "$d/node.id"
  rm -rf "$w"
}
# layer_of_root DIR OUT: the node's rootfs as a layer (owners as Debian set them).
layer_of_root() { tar --numeric-owner --sort=name -C "$1" -cf "$2" .; }

do_kind_node() {
  local goin ld kd root; goin=$(go_inputs); ld=$(kube_ldflags); root=$(kind_node_root); PIECES=()
  [[ -f $(kube_dir)/.ok && -f $(etcd_dir)/.ok ]] ||
    { echo "kind-node needs the kube and etcd components (setup.sh kube etcd kind-node)" >&2; return 1; }
  local t0; t0=$(now)
  local dv; dv=$(debootstrap --version 2>/dev/null || dpkg-query -W -f '${Version}' debootstrap)
  INPUTS=("suite=$KIND_NODE_SUITE" "mirror=$KIND_NODE_MIRROR" "packages=$KIND_NODE_PACKAGES" "debootstrap=$dv"
    "recipe=$(declare -f build_node_rootfs)")
  piece "node rootfs ($KIND_NODE_SUITE)" "$root/rootfs/$KIND_NODE_SUITE" rootfs.tar -- build_node_rootfs "$root/rootfs/$KIND_NODE_SUITE"
  local rootfs_stamp=$STAMP
  INPUTS=("version=$KUBE_VERSION" "cmds=$KIND_NODE_KUBE_CMDS" "go=$goin" "ldflags=$ld" "module=$(<"$(kube_dir)/src/go.mod")"
    "recipe=$(declare -f build_node_kube)")
  local kbins=() c; for c in $KIND_NODE_KUBE_CMDS; do kbins+=("bin/$c"); done
  piece "kubeadm, kubelet, kubectl, kube-scheduler, kube-proxy $KUBE_VERSION" "$root/kube/$KUBE_VERSION" "${kbins[@]}" -- \
    build_node_kube "$root/kube/$KUBE_VERSION" "$ld"
  local kube_stamp=$STAMP
  INPUTS=("version=$COREDNS_VERSION" "go=$goin" "ldflags=$GO_LDFLAGS_BASE" "recipe=$(declare -f build_go_main new_go_module go_mod_file copy_replaces)")
  piece "coredns $COREDNS_VERSION" "$root/coredns/$COREDNS_VERSION" bin/coredns -- \
    build_go_main "$root/coredns/$COREDNS_VERSION" coredns github.com/coredns/coredns "$COREDNS_VERSION" "$GO_LDFLAGS_BASE"
  local coredns_stamp=$STAMP
  INPUTS=("version=$LOCAL_PATH_PROVISIONER_VERSION" "go=$goin" "ldflags=$GO_LDFLAGS_BASE" "recipe=$(declare -f build_go_main new_go_module go_mod_file copy_replaces)")
  piece "local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION" "$root/local-path-provisioner/$LOCAL_PATH_PROVISIONER_VERSION" bin/local-path-provisioner -- \
    build_go_main "$root/local-path-provisioner/$LOCAL_PATH_PROVISIONER_VERSION" local-path-provisioner \
    github.com/rancher/local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION" "$GO_LDFLAGS_BASE"
  local lpp_stamp=$STAMP gccv; gccv=$(gcc --version); gccv=${gccv%%$'\n'*}
  kd=$(kind_node_dir)
  INPUTS=("image=$KIND_NODE_IMAGE" "kind=$KIND_VERSION" "rootfs=$rootfs_stamp" "kube=$kube_stamp" "coredns=$coredns_stamp"
    "local-path-provisioner=$lpp_stamp" "apiserver=$(<"$(kube_dir)/.ok")" "etcd=$(<"$(etcd_dir)/.ok")" "gcc=$gccv"
    "pod_cidr=$KIND_NODE_POD_CIDR" "service_cidr=$KIND_NODE_SERVICE_CIDR" "names=$KIND_STORAGE_IMAGE $KIND_HELPER_IMAGE $KIND_CHECK_IMAGE"
    "writer=$(<"$HERE/image-archive.py")"
    "recipe=$(declare -f build_node_image node_images storage_manifest layer_of layer_of_root image_archive copy_exec busybox_tree go_mod_dir)")
  piece "node image $KIND_NODE_IMAGE" "$kd" node.tar node.id check.tar -- build_node_image "$kd" "$root/rootfs/$KIND_NODE_SUITE/rootfs.tar"
  ensure_node_image_loaded
  local list; list=$(printf '%s, ' "${PIECES[@]}")
  report "kind-node $KUBE_VERSION" "${list%, } (total $(($(now) - t0))s)"
  local p built=''
  for p in "${PIECES[@]}"; do [[ $p == *cached ]] || built=1; done
  if [[ -n $built ]]; then mark_done "$KIND_NODE_IMAGE: ${list%, }"; else mark_cached; fi
}

# ensure_node_image_loaded: the bed's dockerd runs and has the node image built here
# (docker load of node.tar when the engine's data lacks it or has another build).
ensure_node_image_loaded() {
  local kd id have host; kd=$(kind_node_dir); id=$(<"$kd/node.id")
  step "starting the bed's dockerd (ci/testbed/docker.sh start)"
  host=$("$HERE/docker.sh" host)
  VDRILL_CACHE=$CACHE "$HERE/docker.sh" start >/dev/null
  have=$(DOCKER_HOST=$host docker image inspect --format '{{.Id}}' "$KIND_NODE_IMAGE" 2>/dev/null || true)
  if [[ $have == "$id" ]]; then report "  docker image $KIND_NODE_IMAGE" present; return 0; fi
  open_log
  step "docker load $KIND_NODE_IMAGE (${have:+it has $have, }want $id)"
  local t0; t0=$(now)
  DOCKER_HOST=$host docker load -i "$kd/node.tar" >/dev/null
  report "  docker image $KIND_NODE_IMAGE" "loaded in $(($(now) - t0))s"
  PIECES+=("docker load $(($(now) - t0))s")
}

# kind_manifest JSON: adds the docker and kind keys (CONTRACT.md) to the manifest.
kind_manifest() {
  local j=$1 kd; kd=$(kind_node_dir)
  j=$(jq --arg h "$("$HERE/docker.sh" host)" '.docker = {host: $h}' <<<"$j")
  if [[ -f $(kind_dir)/.ok ]]; then
    # The cluster config is copied into the cache: the manifest outlives the checkout
    # that ran setup (CI clones into a folder of its own and removes it).
    mkdir -p "$(kind_dir)"
    cp "$HERE/kind-cluster.yaml" "$(kind_dir)/cluster.yaml.tmp.$$"
    mv -f "$(kind_dir)/cluster.yaml.tmp.$$" "$(kind_dir)/cluster.yaml"
    j=$(jq --arg v "$KIND_VERSION" --arg b "$(kind_dir)/bin/kind" --arg c "$(kind_dir)/cluster.yaml" \
      '.kind = {version: $v, bin: $b, config: $c}' <<<"$j")
    if [[ -f $kd/.ok ]]; then
      j=$(jq --arg i "$KIND_NODE_IMAGE" --arg a "$kd/node.tar" --arg ci "$KIND_CHECK_IMAGE" --arg ca "$kd/check.tar" \
        --arg k "$(kind_node_root)/kube/$KUBE_VERSION/bin/kubectl" --arg id "$(cat "$kd/node.id" 2>/dev/null)" \
        '.kind += {node_image: $i, node_image_id: $id, node_archive: $a, kubectl: $k, check_image: {image: $ci, archive: $ca}}' <<<"$j")
    fi
  fi
  printf '%s' "$j"
}
