#!/usr/bin/env bash
# The test bed's Docker engine: Debian's dockerd, with its data under the cache, its
# own socket, and no iptables, masquerading or forwarding on the host.
#
#   ci/testbed/docker.sh start    # start it unless it runs; prints DOCKER_HOST=...
#   ci/testbed/docker.sh stop     # stop it (containers of its own stop with it)
#   ci/testbed/docker.sh status   # exit 0 and print DOCKER_HOST=... if it answers
#   ci/testbed/docker.sh host     # print the DOCKER_HOST value (running or not)
#
# Data: ${VDRILL_CACHE:-$HOME/.cache/vdrill}/docker/{data,docker.sock,dockerd.log,dockerd.pid}.
# Needs: dockerd, runc and containerd (Debian: docker.io), jq (for the runc wrapper).
#
# Where root's capability bounding set lacks CAP_SYS_RESOURCE (some sandboxes and
# Firecracker VMs), runc refuses every privileged container ("unable to apply caps:
# operation not permitted"), and kind's node is privileged. Only there, the engine's
# default runtime is a wrapper that removes that capability from the OCI spec before
# calling runc. The wrapper is written by this script (nothing upstream does this).
set -euo pipefail

CACHE=${VDRILL_CACHE:-$HOME/.cache/vdrill}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
D=$CACHE/docker
SOCK=$D/docker.sock
HOST=unix://$SOCK
# The exec root holds containerd's sockets, whose paths must stay short (108 bytes).
EXEC_ROOT=/run/vdrill-docker-$(printf '%s' "$CACHE" | sha256sum | cut -c1-8)

say() { printf '[docker %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

answers() { DOCKER_HOST=$HOST timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# lacks_sys_resource: root's bounding set has no CAP_SYS_RESOURCE (bit 24).
lacks_sys_resource() {
  local bnd; bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  (( ((16#$bnd) >> 24 & 1) == 0 ))
}

write_wrapper() {
  local w=$D/bin/runc-sys-resource-wrap runc
  runc=$(command -v runc)
  mkdir -p "$D/bin"
  cat >"$w.tmp.$$" <<EOF
#!/bin/sh
# Written by vdrill's ci/testbed/docker.sh: this machine's bounding set lacks
# CAP_SYS_RESOURCE, so drop it from the container's spec (and from an exec's
# process spec) before runc sees it.
bundle=""; process=""; prev=""
for a in "\$@"; do
  case "\$prev" in --bundle|-b) bundle="\$a" ;; --process|-p) process="\$a" ;; esac
  case "\$a" in --bundle=*) bundle="\${a#--bundle=}" ;; --process=*) process="\${a#--process=}" ;; esac
  prev="\$a"
done
drop() { # drop FILE JQ-PATH
  [ -f "\$1" ] || return 0
  jq -c "\$2 |= (if . then with_entries(.value |= map(select(. != \"CAP_SYS_RESOURCE\"))) else . end)" "\$1" >"\$1.vdrill" && mv "\$1.vdrill" "\$1"
}
[ -n "\$bundle" ] && drop "\$bundle/config.json" .process.capabilities
[ -n "\$process" ] && drop "\$process" .capabilities
exec $runc "\$@"
EOF
  chmod +x "$w.tmp.$$"
  mv -f "$w.tmp.$$" "$w"
  printf '%s' "$w"
}

start() {
  if answers; then echo "DOCKER_HOST=$HOST"; return 0; fi
  for b in dockerd runc containerd docker jq; do
    command -v "$b" >/dev/null || { say "missing $b (Debian: apt-get install docker.io jq)"; exit 1; }
  done
  mkdir -p "$D/data" "$EXEC_ROOT"
  local args=(--data-root "$D/data" --exec-root "$EXEC_ROOT" --pidfile "$D/dockerd.pid"
    -H "$HOST" --iptables=false --ip-masq=false --ip-forward=false)
  if lacks_sys_resource; then
    say "CAP_SYS_RESOURCE is not in root's bounding set: privileged containers run through a runc wrapper that drops it"
    args+=(--add-runtime "vdrill-runc=$(write_wrapper)" --default-runtime vdrill-runc)
  fi
  rm -f "$SOCK"
  say "starting dockerd (data $D/data, log $D/dockerd.log)"
  # The daemon outlives its caller: it must not inherit the caller's other descriptors
  # (setup.sh's lock on fd 9 and its event pipes on 3 and 4 would be held for good, and
  # every later setup would wait for that lock).
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid nohup dockerd "${args[@]}" >>"$D/dockerd.log" 2>&1 </dev/null
  ) &
  for _ in $(seq 1 120); do
    if answers; then echo "DOCKER_HOST=$HOST"; return 0; fi
    sleep 0.5
  done
  say "dockerd did not answer on $SOCK within 60 s; last lines of $D/dockerd.log:"
  tail -n 20 "$D/dockerd.log" >&2
  exit 1
}

stop() {
  local pid
  pid=$(cat "$D/dockerd.pid" 2>/dev/null || true)
  if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then say "not running"; return 0; fi
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { say "stopped"; return 0; }; sleep 0.5; done
  say "dockerd (pid $pid) did not stop within 30 s"; exit 1
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) answers && echo "DOCKER_HOST=$HOST" ;;
  host) echo "$HOST" ;;
  *) echo "usage: $0 start|stop|status|host" >&2; exit 2 ;;
esac
