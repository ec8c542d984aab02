#!/usr/bin/python3
# bench/llm_window.py BIN OUT: a window of a bench_llm.sh try, seen from inside agentd (docs/performance.md,
# "Where a delta waits at 20,000/s").  Start it just before the try: it waits for a process running BIN, then
# at T1 and T2 seconds (env, default 4 and 9; 2.5 and 6 cover the 1,000 streams) after it appears snapshots
# the CPU of each of its threads (/proc/PID/task/*/stat), its bytes written (/proc/PID/io), the machine's
# /proc/stat and GET /metrics, and writes to OUT the CPU per thread name, bytes written and CPU per event
# stored, and the agentd_event_* and agentd_db_* histograms over the window (count per bucket, mean).
# Usage: (T1=2.5 T2=6 bench/llm_window.py build/agentd /tmp/w.txt &); AGENTD_BIN=build/agentd BENCH_REPEAT=1 bash bench/bench_llm.sh
import os, re, sys, time, urllib.request, collections
binpath, out = os.path.realpath(sys.argv[1]), sys.argv[2]
T1, T2 = float(os.environ.get("T1", "4")), float(os.environ.get("T2", "9"))
def find():
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            if os.path.realpath("/proc/%s/exe" % p) == binpath: return int(p)
        except OSError: pass
pid = None
while pid is None:
    pid = find(); time.sleep(0.05)
t0 = time.time()
port = None
while port is None and time.time() - t0 < 10:
    try:
        for l in open("/proc/%d/net/tcp" % pid).read().splitlines()[1:]:
            f = l.split()
            if f[3] == "0A":
                inode = f[9]
                for fd in os.listdir("/proc/%d/fd" % pid):
                    try:
                        if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "socket:[%s]" % inode:
                            port = int(f[1].split(":")[1], 16)
                    except OSError: pass
    except OSError: pass
    time.sleep(0.1)
def snap():
    cpu = collections.Counter()
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            s = open("/proc/%d/task/%s/stat" % (pid, t)).read()
        except OSError: continue
        name = s[s.index("(")+1:s.rindex(")")]
        f = s[s.rindex(")")+2:].split()
        cpu[name] += int(f[11]) + int(f[12])
    try: m = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    except Exception as e: m = ""
    st = open("/proc/stat").readline().split()[1:]
    io = dict(l.split(": ") for l in open("/proc/%d/io" % pid).read().splitlines())
    return cpu, m, [int(x) for x in st], time.time(), int(io["wchar"])
time.sleep(max(0, t0 + T1 - time.time())); a = snap()
time.sleep(max(0, t0 + T2 - time.time())); b = snap()
hz = os.sysconf("SC_CLK_TCK"); dt = b[3] - a[3]
o = open(out, "w")
tot = sum(b[0].values()) - sum(a[0].values())
o.write("window %.1f s; agentd CPU %.2f cores\n" % (dt, tot / hz / dt))
for k in sorted(b[0], key=lambda k: -(b[0][k] - a[0].get(k, 0))):
    d = b[0][k] - a[0].get(k, 0)
    if d: o.write("  %-16s %.3f cores\n" % (k, d / hz / dt))
idle = (b[2][3] + b[2][4]) - (a[2][3] + a[2][4]); total = sum(b[2][:8]) - sum(a[2][:8])
ev = lambda m: float((re.findall(r'^agentd_event_store_seconds_count (\S+)$', m, re.M) or ["0"])[0])
nev = ev(b[1]) - ev(a[1])
o.write("events stored %d (%.0f/s); agentd wrote %.1f KiB per event (all files and sockets); CPU %.1f ms per 1,000 events\n" % (nev, nev / dt, (b[4] - a[4]) / 1024 / max(nev, 1), 1e6 * tot / hz / max(nev, 1)))
o.write("machine busy %.0f %%\n" % (100 * (total - idle) / total))
def hists(m):
    r = {}
    for name, le, c in re.findall(r'^(\w+)_bucket\{le="([^"]+)"\} (\S+)$', m, re.M):
        r.setdefault(name, []).append((le, float(c)))
    for name, v in re.findall(r'^(\w+)_sum (\S+)$', m, re.M): r.setdefault(name + ":sum", v)
    return r
ha, hb = hists(a[1]), hists(b[1])
for name in sorted(hb):
    if name.endswith(":sum") or not name.startswith(("agentd_event", "agentd_db")): continue
    va = dict(ha.get(name, [])); row = []
    prev = 0
    for le, c in hb[name]:
        d = c - va.get(le, 0); row.append("%s:%d" % (le, d - prev)); prev = d
    n = prev
    s = float(hb.get(name + ":sum", 0)) - float(ha.get(name + ":sum", 0))
    o.write("%s n=%d mean=%.3f ms  %s\n" % (name, n, 1000 * s / n if n else 0, " ".join(row)))
o.close()
