#!/usr/bin/python3
"""Writes an OCI image archive for a pod sandbox's "pause" container, offline, from busybox-static.

  pause-image.py OUT.tar NAME        e.g. pause-image.py pause.tar docker.io/library/cnm-pause:1

The image is one uncompressed layer (bin/busybox, bin/sleep and bin/sh as links to it) whose
entrypoint sleeps forever, the same job as Kubernetes' pause. `ctr -n k8s.io images import OUT.tar`
names it NAME (annotation io.containerd.image.name).
"""
import hashlib
import io
import json
import sys
import tarfile

BUSYBOX = "/bin/busybox"


def blob(tar, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":")[1])
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in ("bin", "dev", "proc", "sys", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            t.addfile(info)
        with open(BUSYBOX, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(data)
        info.mode = 0o755
        t.addfile(info, io.BytesIO(data))
        for name in ("sleep", "sh"):
            info = tarfile.TarInfo("bin/" + name)
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            t.addfile(info)
    return buf.getvalue()


def main():
    out, name = sys.argv[1], sys.argv[2]
    with tarfile.open(out, "w") as tar:
        lay = layer()
        layer_desc = blob(tar, lay, "application/vnd.oci.image.layer.v1.tar")
        config = {
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/bin/sleep", "2147483647"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        }
        config_desc = blob(tar, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [layer_desc]}
        manifest_desc = blob(tar, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
        manifest_desc["annotations"] = {"io.containerd.image.name": name,
                                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}
        manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
        for fname, doc in (("oci-layout", {"imageLayoutVersion": "1.0.0"}),
                           ("index.json", {"schemaVersion": 2, "manifests": [manifest_desc]})):
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
