#!/usr/bin/env python3
"""Write a container image as a `docker save` archive from a folder, without a registry
or a build daemon.

    mkimage.py --tag NAME:TAG [--entrypoint JSON] [--cmd JSON] [--env K=V]... \
               [--user U] [--workdir D] ROOTFS OUT.tar

ROOTFS becomes the image's single layer (owners, modes and symlinks kept; entries in
sorted order with a fixed mtime, so the same folder gives the same layer digest).
The archive loads with `docker load`, `ctr images import` and `kind load image-archive`.

Written by hand: no maintained tool here builds an image from a folder without a
daemon or a registry (docker build needs a base image from a registry).
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = 0


def layer_of(rootfs: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(rootfs):
            dirs.sort()
            rel_top = os.path.relpath(top, rootfs)
            names = sorted(dirs + files)
            for name in names:
                path = os.path.join(top, name)
                arc = name if rel_top == "." else os.path.join(rel_top, name)
                info = tar.gettarinfo(path, arcname=arc)
                info.mtime = EPOCH
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
            # os.walk does not descend into symlinked folders: they were added as links.
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(top, d))]
    return buf.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", required=True, action="append", help="NAME:TAG (repeatable)")
    p.add_argument("--entrypoint", type=json.loads, help='JSON list, e.g. ["/velero"]')
    p.add_argument("--cmd", type=json.loads, help="JSON list")
    p.add_argument("--env", action="append", default=[], help="K=V (repeatable)")
    p.add_argument("--user")
    p.add_argument("--workdir")
    p.add_argument("--stop-signal")
    p.add_argument("rootfs")
    p.add_argument("out")
    a = p.parse_args()
    if not os.path.isdir(a.rootfs):
        print(f"mkimage.py: {a.rootfs}: not a folder", file=sys.stderr)
        return 2

    layer = layer_of(a.rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env
    config = {"Env": env}
    if a.entrypoint is not None:
        config["Entrypoint"] = a.entrypoint
    if a.cmd is not None:
        config["Cmd"] = a.cmd
    if a.user:
        config["User"] = a.user
    if a.workdir:
        config["WorkingDir"] = a.workdir
    if a.stop_signal:
        config["StopSignal"] = a.stop_signal
    image = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "vdrill ci/testbed/mkimage.py"}],
    }
    image_json = json.dumps(image, sort_keys=True).encode()
    config_name = hashlib.sha256(image_json).hexdigest() + ".json"
    layer_name = diff_id.split(":", 1)[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": a.tag, "Layers": [layer_name]}]).encode()

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w") as out:
        for name, data in ((config_name, image_json), (layer_name, layer), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = EPOCH
            out.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.out)
    print(f"{a.out} {' '.join(a.tag)} {diff_id} {len(layer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
