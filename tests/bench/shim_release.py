#!/usr/bin/env python3
# A container's stop through cnm-shim as the host fills up: Docker's DeleteEndpoint and then its
# ReleaseAddress, timed at the shim's socket, on a Docker network that already has N endpoints
# (RequestAddress + CreateEndpoint each, no Join: no kernel work), against the same at 1, each
# shim (ours, and --base's) in a netns of its own with a state dir of its own.
#   tests/bench/run.sh shim-release [--endpoints 1000] [--reps 41] [--base SHIM]
# With --networks N (run.sh shim-pool): the IPAM half of a `docker network create` and `rm`
# instead, RequestPool + ReleasePool of a subnet no CNI network has, on a host whose state has N
# CNI network records (written as files, as CNI ADDs leave them; no bridges: RequestPool does no
# kernel work) against one with none.
# Netns cnmbn-<tag>-rel…, dirs /tmp/cnm-bench-rel-<tag>-… (run.sh's trap removes them after a kill).
# CNM_BENCH_TRACE=DIR: every shim under strace (its setup too, so only for a look at the syscalls).
# Subnet 10.213.200.0/21 (each shim has a state of its own, so all use the same one).
import argparse, http.client, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` removes the netns and dirs

ap = argparse.ArgumentParser()
ap.add_argument('--shim', default='build/cnm-shim/cnm-shim')
ap.add_argument('--base', help='a second cnm-shim (e.g. the landed build), measured in the same rounds')
ap.add_argument('--endpoints', type=int, default=1000)
ap.add_argument('--reps', type=int, default=41)
ap.add_argument('--networks', type=int, help='time RequestPool + ReleasePool at N CNI networks against none instead')
ap.add_argument('--tag', default=str(os.getpid()), help='netns and dir names carry it (default: the pid)')
args = ap.parse_args()


class Shim:
    def __init__(self, binary, label, tag, registry):
        registry.append((label, self))  # cleaned up by close() even if what follows fails
        self.ns = 'cnmbn-%s-rel%s' % (args.tag, tag)
        self.work = tempfile.mkdtemp(prefix='cnm-bench-rel-%s-' % args.tag)
        self.sock = self.work + '/shim.sock'
        self.proc = None
        subprocess.run(['ip', 'netns', 'add', self.ns], check=True)
        # CNM_BENCH_TRACE=DIR: each shim under strace -f -T -tt, DIR/shim-release-<tag>.txt.
        trace = os.environ.get('CNM_BENCH_TRACE')
        wrap = ['strace', '-f', '-qq', '-T', '-tt', '-o', '%s/shim-release-%s.txt' % (trace, tag)] if trace else []
        if trace:
            os.makedirs(trace, exist_ok=True)
        # No cluster file: a host's own would make each shim start the cluster agent.
        env = dict(os.environ, CNM_CLUSTER_FILE=self.work + '/no-cluster.json')
        self.proc = subprocess.Popen(['ip', 'netns', 'exec', self.ns] + wrap + [binary, 'serve', '--socket', self.sock,
                                      '--state-dir', self.work + '/state'], stderr=subprocess.DEVNULL, env=env)
        for _ in range(200):
            if os.path.exists(self.sock):
                break
            time.sleep(0.05)
        self.next = 0

    def call(self, method, body):
        c = http.client.HTTPConnection('shim')
        c.sock = socket.socket(socket.AF_UNIX)
        c.sock.connect(self.sock)
        c.request('POST', '/' + method, json.dumps(body))
        r = c.getresponse()
        out = json.loads(r.read() or b'{}')
        c.close()
        if r.status != 200:
            sys.exit('%s: %s' % (method, out))
        return out

    def network(self, nid):
        pool = self.call('IpamDriver.RequestPool', {'AddressSpace': 'local', 'Pool': '10.213.200.0/21', 'Options': {}, 'V6': False})
        self.pool = pool['PoolID']
        gw = pool['Data']['com.docker.network.gateway']
        self.call('NetworkDriver.CreateNetwork', {'NetworkID': nid, 'Options': {'com.docker.network.generic': {}},
                                                  'IPv4Data': [{'AddressSpace': 'local', 'Pool': '10.213.200.0/21', 'Gateway': gw}]})

    def start(self, nid):
        a = self.call('IpamDriver.RequestAddress', {'PoolID': self.pool, 'Address': ''})['Address']
        self.next += 1
        eid = '%064x' % self.next
        self.call('NetworkDriver.CreateEndpoint', {'NetworkID': nid, 'EndpointID': eid, 'Interface': {'Address': a}})
        return eid, a.split('/')[0]

    def stop(self, nid, container):
        t = time.perf_counter()
        self.call('NetworkDriver.DeleteEndpoint', {'NetworkID': nid, 'EndpointID': container[0]})
        self.call('IpamDriver.ReleaseAddress', {'PoolID': self.pool, 'Address': container[1]})
        return (time.perf_counter() - t) * 1e3

    def cni_networks(self, n):
        # N CNI network records, each with its own /28 in 10.213.0.0/18 (none is 10.213.200.0/21).
        for i in range(n):
            d = '%s/state/networks/bn%d' % (self.work, i)
            os.makedirs(d, mode=0o700)
            record = {'name': 'bn%d' % i, 'driver': 'bridge', 'frontend': 'cni', 'addressSpace': 'cni:bn%d' % i,
                      'subnets': ['10.213.%d.%d/28' % (i // 16, i % 16 * 16)], 'options': {'bridge': 'cnmbn%d' % i},
                      'dockerIDs': [], 'created': '2026-12-03T00:00:00Z', 'schema': 2}
            fd = os.open(d + '/network.json', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, json.dumps(record).encode())
            os.close(fd)

    def pool(self):
        t = time.perf_counter()
        pool = self.call('IpamDriver.RequestPool', {'AddressSpace': 'local', 'Pool': '10.213.200.0/21', 'Options': {}, 'V6': False})
        self.call('IpamDriver.ReleasePool', {'PoolID': pool['PoolID']})
        return (time.perf_counter() - t) * 1e3

    def close(self):
        # The shim itself, found in its netns (under strace, `ip netns exec` became strace).
        try:
            pids = subprocess.run(['ip', 'netns', 'pids', self.ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                subprocess.run(['kill', pid])
            if self.proc:
                self.proc.wait(timeout=10)
        except Exception as e:
            print('cleanup of %s: %s' % (self.ns, e), file=sys.stderr)
        subprocess.run(['ip', 'netns', 'del', self.ns], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.work, ignore_errors=True)


def alternate(rounds):
    """Runs each (label, at, timed call) once a rep, in the other order every second rep, and
    returns the times: times[label][at] = [ms, ...]."""
    times = {}
    for i in range(args.reps):
        for label, at, timed in (rounds if i % 2 == 0 else rounds[::-1]):
            times.setdefault(label, {}).setdefault(at, []).append(timed())
    return times


def report(times, big, small, line):
    for label, t in times.items():
        n, z = statistics.median(t[big]), statistics.median(t[small])
        print(line % (label, n, z, n / z))


full, one = 'f' * 64, 'e' * 64
builds = [('ours', args.shim)] + ([('base', args.base)] if args.base else [])
if args.networks is not None and args.networks > 1024:
    sys.exit('--networks: at most 1024 (each has a /28 of 10.213.0.0/18)')
made = []  # every shim, closed at the end
try:
    rounds = []
    if args.networks is not None:
        for label, binary in builds:
            with_n, with_none = Shim(binary, label, label + 'n', made), Shim(binary, label, label + '0', made)
            with_n.cni_networks(args.networks)
            with_n.pool(), with_none.pool()  # a shim's first RequestPool may read what it needs once: not timed
            rounds += [(label, 'N', with_n.pool), (label, '0', with_none.pool)]
        report(alternate(rounds), 'N', '0',
               '%%-5s RequestPool + ReleasePool with %d CNI networks %%.2f ms, with none %%.2f ms: N/0 %%.2f' % args.networks)
        sys.exit(0)
    fulls = [(label, Shim(binary, label, label, made)) for label, binary in builds]  # N endpoints on its network
    for _, s in fulls:
        s.network(full)
    t0 = time.perf_counter()
    for _, s in fulls:
        for _ in range(args.endpoints):
            s.start(full)
    print('setup: %d endpoints on each shim in %.1f s' % (args.endpoints, time.perf_counter() - t0))
    # The first stop in a shim process may read what it needs once: not timed.
    for _, s in fulls:
        s.stop(full, s.start(full))
    ones = [(label, Shim(binary, label, label + '1', made)) for label, binary in builds]  # 1 endpoint
    for _, o in ones:
        o.network(one)
        o.stop(one, o.start(one))
    stop = lambda s, nid: lambda: s.stop(nid, s.start(nid))
    rounds = [(label, 'N', stop(s, full)) for label, s in fulls] + [(label, '1', stop(o, one)) for label, o in ones]
    report(alternate(rounds), 'N', '1',
           '%%-5s container stop (DeleteEndpoint + ReleaseAddress) at N=%d %%.2f ms, at 1 %%.2f ms: N/1 %%.2f' % args.endpoints)
finally:
    for _, s in made:
        s.close()
