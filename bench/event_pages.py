#!/usr/bin/python3
# bench/event_pages.py VARIANT:PAGE_SIZE:BATCH...: WAL frames and bytes per stored event for the events schema of
# migration 0005 (table + unique (user_id, seq) index + run index, foreign keys on, the event_seq upsert per user
# per batch), 1,000 users each with one live run, events round-robin over users in batches of BATCH, as the event
# writer sees them at 20,000/s.  VARIANT: base, noseq (no event_seq upsert), norun (no run index), norun+noseq.
# Python's sqlite3 (not agentd): a model of the page cost, not of agentd's CPU.  docs/performance.md has figures.
import sqlite3, os, random, sys, uuid, time
def run(variant, page_size=4096, users=1000, batch=35, n=40000):
    p = os.path.join(os.environ.get("TMPDIR", "/tmp"), "event_pages.db")
    for f in (p, p+"-wal", p+"-shm"):
        if os.path.exists(f): os.remove(f)
    db = sqlite3.connect(p, isolation_level=None)
    db.execute("PRAGMA page_size=%d" % page_size)
    db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL"); db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA wal_autocheckpoint=0"); db.execute("PRAGMA cache_size=-65536")
    db.execute("CREATE TABLE users(id TEXT PRIMARY KEY)")
    db.execute("CREATE TABLE runs(id TEXT PRIMARY KEY, user_id TEXT)")
    db.execute("""CREATE TABLE events(id INTEGER PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
      run_id TEXT REFERENCES runs(id) ON DELETE CASCADE, thread_id TEXT, type TEXT NOT NULL, agent_name TEXT, created_at REAL NOT NULL, body TEXT NOT NULL)""")
    db.execute("CREATE UNIQUE INDEX events_by_user ON events(user_id, seq)")
    if "norun" not in variant: db.execute("CREATE INDEX events_by_run ON events(run_id)")
    db.execute("CREATE TABLE event_seq(user_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID")
    U = ["usr_" + uuid.uuid4().hex[:20] for _ in range(users)]
    R = ["run_" + uuid.uuid4().hex[:20] for _ in range(users)]
    db.execute("BEGIN"); 
    for u, r in zip(U, R): db.execute("INSERT INTO users VALUES(?)", (u,)); db.execute("INSERT INTO runs VALUES(?,?)", (r, u))
    db.execute("COMMIT"); db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    seq = [0]*users; body = '{"type":"partial_result","seq":1,"run_id":"run_x","data":{"delta":"' + "x"*40 + '"}}' + "y"*120
    k = 0; t0 = time.process_time()
    for b in range(n // batch):
        db.execute("BEGIN IMMEDIATE")
        touched = {}
        for i in range(batch):
            u = k % users; k += 1; seq[u] += 1
            db.execute("INSERT INTO events(user_id,seq,run_id,thread_id,type,agent_name,created_at,body) VALUES(?,?,?,?,?,?,?,?)",
                       (U[u], seq[u], R[u], "thr_x", "partial_result", "reporting", 1.0, body))
            touched[u] = seq[u]
        if "noseq" not in variant:
            for u, s in touched.items():
                db.execute("INSERT INTO event_seq VALUES(?,?) ON CONFLICT(user_id) DO UPDATE SET last_seq=max(last_seq, excluded.last_seq)", (U[u], s))
        db.execute("COMMIT")
    cpu = time.process_time() - t0
    frames = (os.path.getsize(p+"-wal") - 32) / (page_size + 24)
    print("%-12s page %5d batch %4d: %.2f WAL frames/event = %.1f KiB/event; %.1f us CPU/event" % (variant, page_size, batch, frames / n, frames*(page_size+24)/n/1024, cpu/n*1e6))
for v in sys.argv[1:]:
    name, ps, bt = v.split(":")
    run(name, int(ps), batch=int(bt))
