#!/usr/bin/env bash
# Check the kind bed end to end and print how long each part took:
#
#   ci/testbed/kind-check.sh [CLUSTER-NAME]      # default: vdrill-kind-check-<pid>
#
# Creates a kind cluster of its own (own name, own kubeconfig: never ~/.kube/config)
# from what ci/testbed/setup.sh kind kind-node built ($VDRILL_CACHE/testbed.json: kind.*),
# then checks that
#   - the node gets Ready;
#   - a pod on the pod network (not hostNetwork) reaches the API server through the
#     `kubernetes` Service (ClusterIP, kube-proxy) and resolves cluster DNS names (CoreDNS);
#   - that pod resolves and reaches, by name, a Docker container on the `kind` network
#     (how in-cluster Velero reaches LocalStack);
#   - a PVC of the default StorageClass (local-path-provisioner) gets Bound and a pod
#     writes into it and reads it back;
# and always deletes the cluster and the container, then checks that no container,
# volume or network of it is left (the `kind` network stays: kind shares it by design).
# Exit 0 if every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VDRILL_CACHE:-$HOME/.cache/vdrill}
M=$CACHE/testbed.json
NAME=${1:-vdrill-kind-check-$$}
PEER=$NAME-peer

say() { printf '[kind-check %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
ms() { date +%s%3N; }
TIMES=()
timed() { # timed LABEL COMMAND...: run, record the wall time
  local label=$1 t0 rc=0; shift
  t0=$(ms)
  "$@" || rc=$?
  local d=$(($(ms) - t0))
  TIMES+=("$(printf '%-44s %4d.%d s' "$label" $((d / 1000)) $((d % 1000 / 100)))")
  return $rc
}

[[ -f $M ]] || die "no $M: run ci/testbed/setup.sh kind kind-node first"
field() { jq -er "$1" "$M" 2>/dev/null || die "$M has no $1: run ci/testbed/setup.sh kind kind-node"; }
KIND=$(field .kind.bin); IMAGE=$(field .kind.node_image); CONFIG=$(field .kind.config)
KUBECTL_BIN=$(field .kind.kubectl); CHECK_IMAGE=$(field .kind.check_image.image); CHECK_ARCHIVE=$(field .kind.check_image.archive)
DOCKER_HOST=$(field .docker.host); export DOCKER_HOST
"$HERE/docker.sh" start >/dev/null
# The engine is shared: make sure the name stands for the image setup built.
IMAGE_ID=$(field .kind.node_image_id)
have=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if [[ $have != "$IMAGE_ID" ]]; then
  say "$IMAGE is ${have:-absent} in the engine, not $IMAGE_ID: docker load $(field .kind.node_archive)"
  timed "docker load (node image)" docker load -i "$(field .kind.node_archive)" >/dev/null
fi

WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig   # kind and kubectl: never ~/.kube/config
k() { "$KUBECTL_BIN" "$@"; }

volumes_before=$(docker volume ls -q | sort)
networks_before=$(docker network ls --format '{{.Name}}' | sort)

cleanup() {
  local rc=$?
  set +e
  say "deleting cluster $NAME and container $PEER"
  timed "kind delete cluster" "$KIND" delete cluster --name "$NAME" --kubeconfig "$KUBECONFIG" >/dev/null 2>&1
  docker rm -f "$PEER" >/dev/null 2>&1
  local left
  left=$(docker ps -a --format '{{.Names}}' | grep -F "$NAME" || true)
  [[ -z $left ]] || { say "left behind: containers $left"; rc=1; }
  left=$(comm -13 <(printf '%s\n' "$volumes_before") <(docker volume ls -q | sort) | grep . || true)
  [[ -z $left ]] || { say "left behind: volumes $left"; rc=1; }
  left=$(comm -13 <(printf '%s\n' "$networks_before") <(docker network ls --format '{{.Name}}' | sort) | grep -vx kind | grep . || true)
  [[ -z $left ]] || { say "left behind: networks $left"; rc=1; }
  rm -rf "$WORK"
  printf '%s\n' "== kind-check $NAME: timings" "${TIMES[@]}" >&2
  if ((rc == 0)); then say "all checks passed; nothing left behind but the shared kind network"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "creating cluster $NAME from $IMAGE ($CONFIG)"
NODE=$NAME-control-plane
# node_logs: what the node's services said (the node is kept on failure: --retain).
node_logs() {
  docker exec "$NODE" sh -c 'systemctl --no-pager --failed; ctr -n k8s.io images ls -q;
    journalctl --no-pager -o cat -u import-images -u containerd | tail -n 40;
    journalctl --no-pager -o cat -u kubelet | grep -E "^E|rror" | tail -n 30' >&2 || true
}
timed "kind create cluster" "$KIND" create cluster --name "$NAME" --image "$IMAGE" --config "$CONFIG" \
  --kubeconfig "$KUBECONFIG" --retain >"$WORK/create.log" 2>&1 || { tail -n 40 "$WORK/create.log" >&2; node_logs; die "kind create cluster"; }
timed "node Ready" k wait --for=condition=Ready node --all --timeout=120s >/dev/null || { node_logs; die "node not Ready"; }

docker image inspect "$CHECK_IMAGE" >/dev/null 2>&1 || docker load -i "$CHECK_ARCHIVE" >/dev/null
timed "kind load image-archive (busybox)" "$KIND" load image-archive "$CHECK_ARCHIVE" --name "$NAME" >/dev/null 2>&1 ||
  die "kind load image-archive $CHECK_ARCHIVE"

say "starting $PEER on the kind network"
docker run -d --name "$PEER" --network kind "$CHECK_IMAGE" \
  sh -c 'mkdir -p /www && echo "hello from $(hostname)" >/www/index.html && exec httpd -f -p 8080 -h /www' >/dev/null

# Pod checks: one pod on the pod network, its output in its log.
cat >"$WORK/net.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: net-check, namespace: default}
spec:
  restartPolicy: Never
  containers:
    - name: check
      image: $CHECK_IMAGE
      imagePullPolicy: Never
      command:
        - sh
        - -c
        - |
          set -e
          echo "pod ip: \$(hostname -i)"
          echo "--- DNS kubernetes.default.svc.cluster.local"; nslookup kubernetes.default.svc.cluster.local.
          echo "--- API server through the kubernetes Service"; wget -qO- --no-check-certificate https://kubernetes.default.svc/version
          echo; echo "--- DNS $PEER (Docker container on the kind network)"; nslookup $PEER.
          echo "--- HTTP $PEER:8080"; wget -qO- http://$PEER:8080/
EOF
cat >"$WORK/pvc.yaml" <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: pvc-check, namespace: default}
spec:
  restartPolicy: Never
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
  containers:
    - name: check
      image: $CHECK_IMAGE
      imagePullPolicy: Never
      volumeMounts: [{name: data, mountPath: /data}]
      command: [sh, -c, 'echo written-by-pvc-check >/data/f && cat /data/f && df -h /data']
EOF

# wait_pod NAME: until it Succeeded (0) or Failed (1); prints its log.
wait_pod() {
  local phase
  for _ in $(seq 1 240); do
    phase=$(k get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    case $phase in Succeeded | Failed) break ;; esac
    sleep 0.5
  done
  k logs "$1" 2>&1 | sed "s/^/    $1: /" >&2
  [[ $phase == Succeeded ]] || { k describe pod "$1" >&2 || true; return 1; }
}

# until COMMAND...: retry it for up to 120 s.
until_ok() {
  local _i
  for _i in $(seq 1 240); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}
# Pods need their namespace's ServiceAccount, which the controller-manager creates.
timed "ServiceAccount default/default" until_ok k get serviceaccount default -n default || die "no ServiceAccount default/default"
# CoreDNS's first list of the API (through the Service) may precede kube-proxy's rules
# and then waits for its 30 s dial timeout: a pod resolving names waits for CoreDNS Ready.
dns_ready() {
  [[ -n $(k -n kube-system get pod -l k8s-app=kube-dns -o name) ]] &&
    k -n kube-system wait --for=condition=Ready pod -l k8s-app=kube-dns --timeout=1s
}
timed "CoreDNS pods Ready" until_ok dns_ready || die "CoreDNS is not Ready"
k apply -f "$WORK/net.yaml" >/dev/null
timed "pod: DNS, API via Service, kind-network peer" wait_pod net-check || die "pod networking (see the log above)"
hostnet=$(k get pod net-check -o jsonpath='{.spec.hostNetwork}')
[[ $hostnet != true ]] || die "net-check ran on the host network"
k logs net-check | grep -q '"gitVersion": "'"$(jq -r .kubernetes.version "$M")"'"' || die "no /version answer from the API server"
k logs net-check | grep -q "hello from" || die "no answer from $PEER"

k apply -f "$WORK/pvc.yaml" >/dev/null
timed "PVC Bound + pod wrote to it" wait_pod pvc-check || die "storage (see the log above)"
[[ $(k get pvc data -o jsonpath='{.status.phase}') == Bound ]] || die "PVC data is not Bound"
k logs pvc-check | grep -q written-by-pvc-check || die "pvc-check did not read back what it wrote"
say "default StorageClass: $(k get storageclass -o jsonpath='{range .items[*]}{.metadata.name} ({.provisioner}){end}')"

mem=$(docker stats --no-stream --format '{{.MemUsage}}' "$NODE" || true)
pids=$(docker stats --no-stream --format '{{.PIDs}}' "$NODE" || true)
TIMES+=("node $NODE memory: $mem, PIDs: $pids")
say "node memory: $mem, PIDs: $pids"
