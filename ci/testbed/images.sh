# shellcheck shell=bash
# shellcheck disable=SC2317 # (info) functions run indirectly are not unreachable
# The application images kind cells run, built without a registry (sourced by
# ci/testbed/setup.sh after kind-node.sh, whose piece, image_archive, layer_of and
# go_mod_dir it uses).
#
# Component `images` (each piece its own stamp, under $CACHE/images/):
#   velero/<v>/         for each pinned Velero: velero-restore-helper and velero-helper
#                       built in the velero component's module, and the image
#                       vdrill.local/velero:<v> laid out as upstream's velero/velero
#                       (/velero, /velero-restore-helper, /velero-helper; user cnb)
#   plugin/<name>/<pv>/ each plugin of each pinned Velero: cp-plugin built from the
#                       plugin's module, and vdrill.local/velero-plugin-for-<name>:<pv>
#                       laid out as upstream's (/plugins/<binary>, /bin/cp-plugin, the
#                       entrypoint that copies the plugin into /target)
#   workload/           vdrill.local/workload:busybox, Debian's static busybox with a
#                       link per applet (stands for busybox:1.36)
#   localstack/<ver>/   vdrill.local/localstack:<ver>: Debian with Python 3 and the bed's
#                       locked LocalStack in a venv, started as upstream's image is
#                       (port 4566, logs "Ready." when it serves)
# Setup then makes sure the bed's dockerd has each image (docker load when missing or
# another build). The manifest's `images` key lists image, archive and upstream name.

IMAGES_WORKLOAD=vdrill.local/workload:busybox
IMAGES_WORKLOAD_UPSTREAM=busybox:1.36

images_root() { echo "$CACHE/images"; }

# archive_id TAR: the image id `docker load` gives the archive (its config's digest).
archive_id() {
  python3 -c 'import json,sys,tarfile
t=tarfile.open(sys.argv[1]); m=json.load(t.extractfile("manifest.json"))
print("sha256:"+m[0]["Config"].split("/")[-1].removesuffix(".json"))' "$1"
}

# ensure_loaded IMAGE TAR: the bed's dockerd has IMAGE as built in TAR.
ensure_loaded() {
  local image=$1 tar=$2 want have host
  host=$("$HERE/docker.sh" host)
  want=$(archive_id "$tar")
  have=$(DOCKER_HOST=$host docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  [[ $have == "$want" ]] && return 0
  open_log
  step "docker load $image"
  DOCKER_HOST=$host docker load -i "$tar" >/dev/null
  PIECES+=("docker load $image")
}

# --- Velero and its plugins -------------------------------------------------------

# build_velero_image DIR VERSION LDFLAGS
build_velero_image() {
  local d=$1 v=$2 ld=$3 src bin tree
  src=$(velero_dir "$v")/src
  step "compiling velero-restore-helper and velero-helper $v"
  mkdir -p "$d/bin"
  (cd "$src" && go build -trimpath -ldflags="$ld" -o "$d/bin.tmp.$$/" \
    github.com/vmware-tanzu/velero/cmd/velero-restore-helper github.com/vmware-tanzu/velero/cmd/velero-helper)
  for bin in velero-restore-helper velero-helper; do mv -f "$d/bin.tmp.$$/$bin" "$d/bin/$bin"; done
  rmdir "$d/bin.tmp.$$"
  step "image vdrill.local/velero:$v"
  tree=$d/tree.tmp.$$
  rm -rf "$tree"; mkdir -p "$tree/etc" "$tree/tmp" "$tree/home/cnb"
  cp "$(velero_dir "$v")/bin/velero" "$tree/velero"
  cp "$d/bin/velero-restore-helper" "$d/bin/velero-helper" "$tree/"
  # Upstream's base image (paketobuildpacks/run-jammy-tiny) runs as cnb (1000:1000).
  printf 'root:x:0:0:root:/root:/sbin/nologin\ncnb:x:1000:1000:cnb:/home/cnb:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$tree/etc/passwd"
  printf 'root:x:0:\ncnb:x:1000:\nnogroup:x:65534:\n' >"$tree/etc/group"
  # Kopia writes its repository config under $HOME (/home/cnb/udmrepo). The layer's
  # files are all root's (layer_of), so cnb's home is writable by all, like /tmp.
  chmod 1777 "$tree/tmp" "$tree/home/cnb"
  image_archive "$d/image.tar.tmp.$$" "vdrill.local/velero:$v" "$tree" --user cnb:cnb --env HOME=/home/cnb
  mv -f "$d/image.tar.tmp.$$" "$d/image.tar"
  rm -rf "$tree"
}

# build_plugin_image DIR NAME PLUGIN-VERSION
build_plugin_image() {
  local d=$1 name=$2 pv=$3 pd mod bin tree
  pd=$(plugin_dir "$name" "$pv")
  mod=$(plugin_module "$name")
  bin=$(basename "$mod")
  step "compiling cp-plugin of $mod $pv"
  mkdir -p "$d/bin"
  (cd "$pd/src" && go build -trimpath -ldflags="$GO_LDFLAGS_BASE" -o "$d/bin/cp-plugin.tmp.$$" "$mod/hack/cp-plugin")
  mv -f "$d/bin/cp-plugin.tmp.$$" "$d/bin/cp-plugin"
  step "image vdrill.local/$bin:$pv"
  tree=$d/tree.tmp.$$
  rm -rf "$tree"; mkdir -p "$tree/plugins" "$tree/bin"
  cp "$pd/bin/$bin" "$tree/plugins/$bin"
  cp "$d/bin/cp-plugin" "$tree/bin/cp-plugin"
  image_archive "$d/image.tar.tmp.$$" "vdrill.local/$bin:$pv" "$tree" --user 65532:65532 \
    --entrypoint "[\"cp-plugin\", \"/plugins/$bin\", \"/target/$bin\"]"
  mv -f "$d/image.tar.tmp.$$" "$d/image.tar"
  rm -rf "$tree"
}

# --- workload ---------------------------------------------------------------------

# build_workload_image DIR ROOTFS-TAR: busybox from the kind node's Debian rootfs.
build_workload_image() {
  local d=$1 rootfs=$2 tree=$1/tree.tmp.$$ a
  rm -rf "$tree"; mkdir -p "$tree/bin" "$tree/etc" "$tree/tmp"
  tar -xf "$rootfs" -O ./usr/bin/busybox >"$tree/bin/busybox"
  chmod 0755 "$tree/bin/busybox"
  for a in $("$tree/bin/busybox" --list); do [[ $a == busybox ]] || ln -sf busybox "$tree/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tree/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$tree/etc/group"
  chmod 1777 "$tree/tmp"
  image_archive "$d/image.tar.tmp.$$" "$IMAGES_WORKLOAD" "$tree" --cmd '["sh"]'
  mv -f "$d/image.tar.tmp.$$" "$d/image.tar"
  rm -rf "$tree"
}

# --- LocalStack ---------------------------------------------------------------------

# build_localstack_image DIR VERSION: Debian trixie (its Python 3.13, the minor the
# lock is for) with the locked LocalStack in /opt/localstack/venv, installed in a chroot.
build_localstack_image() {
  local d=$1 v=$2 tree=$1/tree.tmp.$$
  rm -rf "$tree"
  step "debootstrap $KIND_NODE_SUITE with python3"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$KIND_NODE_SUITE" "$tree" "$KIND_NODE_MIRROR"
  step "pip install -r $LOCALSTACK_LOCK in the image's venv"
  cp "$HERE/$LOCALSTACK_LOCK" "$tree/tmp/requirements.lock"
  cp /etc/resolv.conf "$tree/etc/resolv.conf"
  # pip in the chroot verifies against the chroot's system bundle: lend it the host's for
  # the install (the host may trust a proxy's certificate that Debian's bundle lacks).
  local bundle=$tree/etc/ssl/certs/ca-certificates.crt
  mv "$bundle" "$bundle.debian"
  cp /etc/ssl/certs/ca-certificates.crt "$bundle"
  chroot "$tree" python3 -m venv /opt/localstack/venv
  chroot "$tree" env -u PIP_FIND_LINKS -u PIP_CERT SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    /opt/localstack/venv/bin/pip install --no-cache-dir --disable-pip-version-check --progress-bar off \
    -r /tmp/requirements.lock
  mv -f "$bundle.debian" "$bundle"
  rm -f "$tree/tmp/requirements.lock" "$tree/etc/resolv.conf"
  rm -rf "$tree/var/cache/apt/archives"/*.deb "$tree/var/lib/apt/lists"/* "$tree/usr/share/doc" "$tree/usr/share/man"
  mkdir -p "$tree/var/lib/localstack"
  # Settings as upstream's image has them, plus what keeps it on this machine:
  # no DNS server, no certificate download, no analytics.
  image_archive "$d/image.tar.tmp.$$" "vdrill.local/localstack:$v" "$tree" \
    --entrypoint '["/opt/localstack/venv/bin/python", "-m", "localstack.runtime.main"]' \
    --env GATEWAY_LISTEN=0.0.0.0:4566 --env DNS_ADDRESS=0 --env SKIP_SSL_CERT_DOWNLOAD=1 \
    --env DISABLE_EVENTS=1 --env FILESYSTEM_ROOT=/var/lib/localstack --env LOCALSTACK_HOST=localhost.localstack.cloud:4566
  mv -f "$d/image.tar.tmp.$$" "$d/image.tar"
  rm -rf "$tree"
}

# --- the component --------------------------------------------------------------------

do_images() {
  local root t0 v entry name pv ld goin rootfs lsv list p built=''
  root=$(images_root); t0=$(now); goin=$(go_inputs)
  PIECES=()
  rootfs=$(kind_node_root)/rootfs/$KIND_NODE_SUITE/rootfs.tar
  [[ -f $rootfs ]] || { echo "images: no $rootfs: run ci/testbed/setup.sh kind-node first" >&2; return 1; }
  for v in "${PINNED_VELERO[@]}"; do
    [[ -f $(velero_dir "$v")/.ok ]] || { echo "images: velero $v is not built: run ci/testbed/setup.sh velero" >&2; return 1; }
    ld=$(velero_ldflags "$v")
    INPUTS=("version=$v" "go=$goin" "ldflags=$ld" "velero=$(<"$(velero_dir "$v")/.ok")"
      "writer=$(<"$HERE/image-archive.py")" "recipe=$(declare -f build_velero_image image_archive layer_of)")
    piece "image velero $v" "$root/velero/$v" image.tar bin/velero-restore-helper bin/velero-helper -- \
      build_velero_image "$root/velero/$v" "$v" "$ld"
    entry=$(velero_entry "$v")
    while IFS='=' read -r name pv; do
      [[ -n $name && -f $(plugin_dir "$name" "$pv")/bin/$(basename "$(plugin_module "$name")") ]] || continue
      INPUTS=("plugin=$name@$pv" "go=$goin" "module=$(plugin_module "$name")"
        "plugin-build=$(<"$(plugin_dir "$name" "$pv")/.ok")"
        "writer=$(<"$HERE/image-archive.py")" "recipe=$(declare -f build_plugin_image image_archive layer_of)")
      piece "image $name plugin $pv" "$root/plugin/$name/$pv" image.tar bin/cp-plugin -- \
        build_plugin_image "$root/plugin/$name/$pv" "$name" "$pv"
    done < <(velero_plugins "$entry")
  done
  INPUTS=("rootfs=$(<"$(dirname "$rootfs")/.ok")" "writer=$(<"$HERE/image-archive.py")"
    "recipe=$(declare -f build_workload_image image_archive layer_of)")
  piece "image workload" "$root/workload" image.tar -- build_workload_image "$root/workload" "$rootfs"
  lsv=$(localstack_version)
  INPUTS=("version=$lsv" "lock=$(<"$HERE/$LOCALSTACK_LOCK")" "suite=$KIND_NODE_SUITE" "mirror=$KIND_NODE_MIRROR"
    "writer=$(<"$HERE/image-archive.py")" "recipe=$(declare -f build_localstack_image image_archive layer_of)")
  piece "image localstack $lsv" "$root/localstack/$lsv" image.tar -- build_localstack_image "$root/localstack/$lsv" "$lsv"

  step "starting the bed's dockerd (ci/testbed/docker.sh start)"
  VDRILL_CACHE=$CACHE "$HERE/docker.sh" start >/dev/null
  while read -r image tar; do ensure_loaded "$image" "$tar"; done < <(images_list)
  list=$(printf '%s, ' "${PIECES[@]}")
  report "images" "${list%, } (total $(($(now) - t0))s)"
  for p in "${PIECES[@]}"; do [[ $p == *cached ]] || built=1; done
  if [[ -n $built ]]; then mark_done "${list%, }"; else mark_cached; fi
}

# images_list: "IMAGE ARCHIVE" for every image built (and stamped) in the cache.
images_list() {
  local root v entry name pv mod lsv; root=$(images_root)
  for v in "${PINNED_VELERO[@]}"; do
    [[ -f $root/velero/$v/.ok ]] && echo "vdrill.local/velero:$v $root/velero/$v/image.tar"
    entry=$(velero_entry "$v") || continue
    while IFS='=' read -r name pv; do
      [[ -n $name && -f $root/plugin/$name/$pv/.ok ]] || continue
      mod=$(plugin_module "$name")
      echo "vdrill.local/$(basename "$mod"):$pv $root/plugin/$name/$pv/image.tar"
    done < <(velero_plugins "$entry")
  done
  [[ -f $root/workload/.ok ]] && echo "$IMAGES_WORKLOAD $root/workload/image.tar"
  lsv=$(localstack_version)
  [[ -f $root/localstack/$lsv/.ok ]] && echo "vdrill.local/localstack:$lsv $root/localstack/$lsv/image.tar"
  return 0
}

# images_manifest JSON: adds the `images` key (image, archive, upstream name).
images_manifest() {
  local j=$1 root v entry name pv mod lsv plugins; root=$(images_root)
  local velero='{}'
  for v in "${PINNED_VELERO[@]}"; do
    [[ -f $root/velero/$v/.ok ]] || continue
    plugins='{}'
    entry=$(velero_entry "$v") || continue
    while IFS='=' read -r name pv; do
      [[ -n $name && -f $root/plugin/$name/$pv/.ok ]] || continue
      mod=$(basename "$(plugin_module "$name")")
      plugins=$(jq --arg n "$name" --arg i "vdrill.local/$mod:$pv" --arg a "$root/plugin/$name/$pv/image.tar" \
        --arg u "velero/$mod:$pv" '.[$n] = {image: $i, archive: $a, upstream: $u}' <<<"$plugins")
    done < <(velero_plugins "$entry")
    velero=$(jq --arg v "$v" --arg i "vdrill.local/velero:$v" --arg a "$root/velero/$v/image.tar" \
      --arg u "velero/velero:$v" --argjson p "$plugins" \
      '.[$v] = {image: $i, archive: $a, upstream: $u, plugins: $p}' <<<"$velero")
  done
  j=$(jq --argjson v "$velero" '.images = {velero: $v}' <<<"$j")
  if [[ -f $root/workload/.ok ]]; then
    j=$(jq --arg i "$IMAGES_WORKLOAD" --arg a "$root/workload/image.tar" --arg u "$IMAGES_WORKLOAD_UPSTREAM" \
      '.images.workload = {image: $i, archive: $a, upstream: $u}' <<<"$j")
  fi
  lsv=$(localstack_version)
  if [[ -f $root/localstack/$lsv/.ok ]]; then
    j=$(jq --arg i "vdrill.local/localstack:$lsv" --arg a "$root/localstack/$lsv/image.tar" \
      --arg u "localstack/localstack:$lsv" '.images.localstack = {image: $i, archive: $a, upstream: $u}' <<<"$j")
  fi
  printf '%s' "$j"
}
