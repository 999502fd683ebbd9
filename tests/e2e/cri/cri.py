#!/usr/bin/python3
"""A small CRI client: the RuntimeService calls kubelet makes to run and tear down a pod sandbox.

Run with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf). The messages come from
cri.proto next to this file, compiled with protoc (protobuf-compiler) into $CRI_GEN on first use;
the calls are made through grpcio's generic unary-unary interface, so no gRPC code generator is
needed. Every command prints one JSON document on stdout; a failed call prints
{"error": <grpc code>, "message": ...} and exits 1.

  cri.py -s SOCK version
  cri.py -s SOCK status                     conditions by type: {"NetworkReady": {...}, ...}
  cri.py -s SOCK run [--port C:H] [--cgroup-parent P] NAME...
                                            one RunPodSandbox per NAME, all at once (threads)
  cri.py -s SOCK inspect ID                 state, IPs, the pause pid and the netns path
  cri.py -s SOCK stop ID... / rm ID...
  cri.py -s SOCK list
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.environ.get("CRI_GEN") or os.path.join("/tmp", "cnm-cri-gen-%d" % os.getuid())


def load_messages():
    # protoc writes cri_pb2.py; regenerate when cri.proto is newer (the test passes a fresh dir).
    proto = os.path.join(HERE, "cri.proto")
    out = os.path.join(GEN, "cri_pb2.py")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(proto):
        os.makedirs(GEN, exist_ok=True)
        subprocess.run(["protoc", "-I" + HERE, "--python_out=" + GEN, proto], check=True)
    sys.path.insert(0, GEN)
    import cri_pb2  # noqa: E402  (generated above)
    return cri_pb2


pb = load_messages()
import grpc  # noqa: E402  (after the path set-up, so a missing package is reported by name)

SERVICE = "/runtime.v1.RuntimeService/"
TIMEOUT = float(os.environ.get("CRI_TIMEOUT", "60"))


class Client:
    def __init__(self, socket):
        self.channel = grpc.insecure_channel("unix://" + socket)

    def call(self, method, request, response_type):
        rpc = self.channel.unary_unary(SERVICE + method,
                                       request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=response_type.FromString)
        return rpc(request, timeout=TIMEOUT)


def fail(err):
    code = err.code().name if hasattr(err, "code") else "EXCEPTION"
    details = err.details() if hasattr(err, "details") else str(err)
    return {"error": code, "message": details}


def pod_config(name, ports, cgroup_parent):
    meta = pb.PodSandboxMetadata(name=name, uid="uid-" + name, namespace="cnm-e2e", attempt=0)
    linux = pb.LinuxPodSandboxConfig(
        cgroup_parent=cgroup_parent,
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)))
    mappings = []
    for p in ports:
        parts = p.split(":")
        proto = pb.UDP if len(parts) > 2 and parts[2].lower() == "udp" else pb.TCP
        mappings.append(pb.PortMapping(protocol=proto, container_port=int(parts[0]), host_port=int(parts[1])))
    return pb.PodSandboxConfig(metadata=meta, hostname=name, port_mappings=mappings,
                               labels={"app": "cnm-e2e", "name": name}, linux=linux)


def cmd_version(c, _args):
    r = c.call("Version", pb.VersionRequest(version="v1"), pb.VersionResponse)
    return {"version": r.version, "runtime_name": r.runtime_name, "runtime_version": r.runtime_version,
            "runtime_api_version": r.runtime_api_version}


def cmd_status(c, _args):
    r = c.call("Status", pb.StatusRequest(verbose=False), pb.StatusResponse)
    return {cond.type: {"status": cond.status, "reason": cond.reason, "message": cond.message}
            for cond in r.status.conditions}


def cmd_run(c, args):
    results = [None] * len(args.names)

    def one(i, name):
        t0 = time.monotonic()
        try:
            r = c.call("RunPodSandbox", pb.RunPodSandboxRequest(config=pod_config(name, args.port, args.cgroup_parent)),
                       pb.RunPodSandboxResponse)
            results[i] = {"name": name, "id": r.pod_sandbox_id, "ms": round((time.monotonic() - t0) * 1000)}
        except grpc.RpcError as e:
            results[i] = dict(fail(e), name=name)

    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(args.names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def cmd_inspect(c, args):
    r = c.call("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=args.id, verbose=True),
               pb.PodSandboxStatusResponse)
    s = r.status
    out = {"id": s.id, "name": s.metadata.name, "state": pb.PodSandboxState.Name(s.state),
           "ip": s.network.ip, "additional_ips": [a.ip for a in s.network.additional_ips],
           "pid": 0, "netns": ""}
    # containerd's verbose info: {"pid": …, "runtimeSpec": {"linux": {"namespaces": […]}}, …}
    try:
        info = json.loads(r.info.get("info", "{}"))
    except ValueError:
        info = {}
    out["pid"] = info.get("pid", 0)
    for ns in ((info.get("runtimeSpec") or {}).get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "network":
            out["netns"] = ns.get("path", "")
    return out


def cmd_stop(c, args):
    for i in args.ids:
        c.call("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=i), pb.StopPodSandboxResponse)
    return {"stopped": args.ids}


def cmd_rm(c, args):
    for i in args.ids:
        c.call("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=i), pb.RemovePodSandboxResponse)
    return {"removed": args.ids}


def cmd_list(c, _args):
    r = c.call("ListPodSandbox", pb.ListPodSandboxRequest(), pb.ListPodSandboxResponse)
    return [{"id": p.id, "name": p.metadata.name, "state": pb.PodSandboxState.Name(p.state)} for p in r.items]


def main():
    ap = argparse.ArgumentParser(description="minimal CRI v1 RuntimeService client")
    ap.add_argument("-s", "--socket", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("version")
    sub.add_parser("status")
    p = sub.add_parser("run")
    p.add_argument("--port", action="append", default=[], help="CONTAINER:HOST[:tcp|udp]")
    p.add_argument("--cgroup-parent", default="")
    p.add_argument("names", nargs="+")
    p = sub.add_parser("inspect")
    p.add_argument("id")
    for name in ("stop", "rm"):
        p = sub.add_parser(name)
        p.add_argument("ids", nargs="+")
    sub.add_parser("list")
    args = ap.parse_args()
    c = Client(args.socket)
    try:
        out = globals()["cmd_" + args.cmd](c, args)
    except grpc.RpcError as e:
        print(json.dumps(fail(e)))
        return 1
    print(json.dumps(out))
    if isinstance(out, list) and any("error" in o for o in out if isinstance(o, dict)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
