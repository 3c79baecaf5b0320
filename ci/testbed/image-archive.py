#!/usr/bin/env python3
"""Write a container image as a `docker save` archive, without a registry or an engine.

    image-archive.py --layer LAYER.tar [--layer ...] --tag NAME:TAG [--tag ...] --out OUT.tar
                     [--entrypoint JSON] [--cmd JSON] [--env K=V ...] [--workdir DIR] [--user U]
                     [--stop-signal SIG]

Each LAYER.tar is an uncompressed tar of a file tree (made with GNU tar, owners kept),
stored as one layer. The archive is what `docker load`, `ctr images import` and
`kind load image-archive` read: manifest.json, the image config (<sha256>.json) and
the layers. The output is reproducible: fixed timestamps, no host data in the config.
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

EPOCH = "1970-01-01T00:00:00Z"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_bytes(out, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    out.addfile(ti, io.BytesIO(data))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", action="append", required=True)
    p.add_argument("--tag", action="append", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--entrypoint")
    p.add_argument("--cmd")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir")
    p.add_argument("--user")
    p.add_argument("--stop-signal")
    a = p.parse_args()

    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    env += a.env
    config = {"Env": env}
    for key, val in (("Entrypoint", a.entrypoint), ("Cmd", a.cmd)):
        if val is not None:
            try:
                parsed = json.loads(val)
            except ValueError as e:
                sys.exit(f"image-archive.py: --{key.lower()}: not JSON ({e}): {val}")
            if not (isinstance(parsed, list) and all(isinstance(x, str) for x in parsed)):
                sys.exit(f"image-archive.py: --{key.lower()}: expected a JSON list of strings: {val}")
            config[key] = parsed
    if a.workdir:
        config["WorkingDir"] = a.workdir
    if a.user:
        config["User"] = a.user
    if a.stop_signal:
        config["StopSignal"] = a.stop_signal

    digests = []
    for layer in a.layer:
        if not os.path.isfile(layer):
            sys.exit(f"image-archive.py: --layer {layer}: no such file")
        digests.append(sha256_file(layer))
    image = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in digests]},
        "history": [{"created": EPOCH, "created_by": "vdrill ci/testbed/image-archive.py"} for _ in digests],
    }
    config_bytes = json.dumps(image, sort_keys=True, separators=(",", ":")).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = [{"Config": config_digest + ".json", "RepoTags": a.tag,
                 "Layers": [d + "/layer.tar" for d in digests]}]

    tmp = a.out + ".part"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
        add_bytes(out, config_digest + ".json", config_bytes)
        for layer, d in zip(a.layer, digests):
            ti = tarfile.TarInfo(d + "/layer.tar")
            ti.size = os.path.getsize(layer)
            ti.mode = 0o644
            with open(layer, "rb") as f:
                out.addfile(ti, f)
        add_bytes(out, "manifest.json", json.dumps(manifest).encode())
    shutil.move(tmp, a.out)
    # The image id docker and containerd report: sha256 of the config.
    print("sha256:" + config_digest)


if __name__ == "__main__":
    main()
