"""agentd end-to-end test helpers (SPEC conventions, §1, §6, §10).

- Agentd: start the real binary (AGENTD_BIN, default build-test/agentd) on --port 0,
  wait for `agentd listening on http(s)://HOST:PORT`, stop it with SIGTERM and check
  exit status 0 and a sanitizer-clean stderr; restart() starts it again on the same port and data dir.
- agentd_server(*flags): a module-scoped pytest fixture built on Agentd.
- mint_token(): HS256 (or deliberately broken) JWTs with the stdlib only.
- HttpConn: raw HTTP/1.1 over a socket (keep-alive, pipelining, byte-level control).
- RawWS: raw RFC 6455 client over a socket (malformed frames, slow readers).

Python: /usr/bin/python3 with Debian 12's pytest 7.2, httpx 0.23, websockets 10.4.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import ssl
import string
import struct
import subprocess
import threading
import time

import pytest

AGENTD_BIN = os.environ.get("AGENTD_BIN", "/work/main/build-test/agentd")
LISTEN_RE = re.compile(rb"agentd listening on (https?)://(\[[^\]]+\]|[^\s:/]+):(\d+)")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ISSUER = "netra-auth-service"


def random_secret(n=48):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def sanitizer_env(extra_asan=None):
    """Environment for a sanitized server: leak checks on, UBSan fatal."""
    env = dict(os.environ)
    asan = env.get("ASAN_OPTIONS", "detect_leaks=1")
    if extra_asan:
        asan = asan + ":" + extra_asan if asan else extra_asan
    env["ASAN_OPTIONS"] = asan
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    # The flags under test must not be overridden by a developer's environment.
    for k in list(env):
        if k.startswith("AGENTD_") and k != "AGENTD_BIN":
            del env[k]
    for k in ("JWT_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "LLM_PROVIDER"):
        env.pop(k, None)
    return env


def require_binary():
    if not (os.path.isfile(AGENTD_BIN) and os.access(AGENTD_BIN, os.X_OK)):
        pytest.fail("agentd binary not found at %s (build it: make build-test, or set AGENTD_BIN)" % AGENTD_BIN,
                    pytrace=False)


class Agentd:
    """One running agentd process."""

    def __init__(self, workdir, args=(), secret=None, extra_asan=None, name="agentd", env=None):
        self.workdir = str(workdir)
        self.env = dict(env or {})   # extra environment of every start (e.g. a stand-in's OPENAI_* variables)
        self.data_dir = os.path.join(self.workdir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.secret = secret or random_secret()
        self.args = list(args)
        self.extra_asan = extra_asan
        self.name = name
        self.proc = None
        self.scheme = self.host = None
        self.port = None
        self.listen_port = 0   # 0: any free port; restart() keeps the one it had
        self.stdout_path = os.path.join(self.workdir, name + ".stdout")
        self.stderr_path = os.path.join(self.workdir, name + ".stderr")
        self._stdout_lines = []
        self._stdout_lock = threading.Lock()
        self._reader = None

    # -- lifecycle ---------------------------------------------------------
    def cmdline(self):
        return [AGENTD_BIN, "--port", str(self.listen_port), "--data-dir", self.data_dir, "--jwt-secret", self.secret,
                "--log-format", "json", "--log-level", "info"] + self.args

    def start(self, timeout=20.0):
        require_binary()
        with self._stdout_lock:
            self._stdout_lines = []
        self._stderr_f = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.cmdline(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr_f, env=dict(sanitizer_env(self.extra_asan), **self.env),
                                     cwd=self.workdir, start_new_session=True)
        self._reader = threading.Thread(target=self._drain_stdout, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self._find_listen_line()
            if m:
                self.scheme = m.group(1).decode()
                self.host = m.group(2).decode().strip("[]")
                self.port = int(m.group(3))
                return self
            if self.proc.poll() is not None:
                time.sleep(0.1)
                raise AssertionError("agentd exited with %s before listening\n--- stderr tail ---\n%s"
                                     % (self.proc.returncode, self.stderr_tail()))
            time.sleep(0.02)
        self.kill()
        raise AssertionError("agentd did not print its listening line within %ss\n--- stderr tail ---\n%s"
                             % (timeout, self.stderr_tail()))

    def _drain_stdout(self):
        with open(self.stdout_path, "wb") as f:
            for line in iter(self.proc.stdout.readline, b""):
                f.write(line)
                f.flush()
                with self._stdout_lock:
                    self._stdout_lines.append(line)

    def _find_listen_line(self):
        with self._stdout_lock:
            for line in self._stdout_lines:
                m = LISTEN_RE.search(line)
                if m:
                    return m
        try:
            with open(self.stderr_path, "rb") as f:
                return LISTEN_RE.search(f.read())
        except OSError:
            return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        rc = self.proc.wait(timeout=timeout)
        if self._reader:
            self._reader.join(timeout=2)
        return rc

    def kill(self):
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Send sig (if still running) and return the exit status."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(sig)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("agentd did not exit within %ss of %s\n--- stderr tail ---\n%s"
                                 % (timeout, sig, self.stderr_tail()))

    def restart(self, timeout=20.0):
        """Stop (SIGTERM; exit 0, sanitizer-clean; nothing to do if already stopped) and start again on the
        same port and data dir, as an operator's restart: clients that saved the address reconnect to it."""
        self.stop_and_check()
        self.listen_port = self.port
        return self.start(timeout)

    def stop_and_check(self, sig=signal.SIGTERM, timeout=30.0):
        """Teardown: stop, assert exit 0 and no sanitizer report."""
        rc = self.stop(sig, timeout)
        self.check_sanitizers()
        assert rc == 0, "agentd exited with %r after %s\n--- stderr tail ---\n%s" % (rc, sig, self.stderr_tail())

    def check_sanitizers(self):
        err = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            if marker in err:
                i = err.index(marker)
                raise AssertionError("sanitizer report in agentd stderr (%s):\n%s" % (self.stderr_path,
                                                                                     err[max(0, i - 2000):i + 6000]))

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=4000):
        return self.stderr_text()[-n:]

    # -- facts -------------------------------------------------------------
    @property
    def base_url(self):
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    @property
    def ws_base(self):
        return "%s://%s:%d" % ("wss" if self.scheme == "https" else "ws", self.host, self.port)

    @property
    def addr(self):
        return (self.host, self.port)

    def token(self, **kw):
        return mint_token(self.secret, **kw)

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def get(self, path, headers=None, timeout=5.0):
        """One plain GET over a fresh raw connection (no TLS): Response."""
        c = HttpConn(self.addr, timeout=timeout)
        try:
            c.request("GET", path, headers=headers)
            return c.read_response()
        finally:
            c.close()

    def ws_open_count(self):
        """agentd_connections_open{kind="ws"} from /metrics, or None when absent."""
        r = self.get("/metrics")
        return metric_value(r.text(), "agentd_connections_open", {"kind": "ws"})


def metric_value(text, name, labels=None):
    """The value of the first sample of `name` whose labels include `labels`."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in (labels or {}).items()):
            return float(m.group(4))
    return None


def agentd_server(*args, extra_asan=None, name="agentd"):
    """A module-scoped fixture: one agentd with these extra flags for the module."""

    @pytest.fixture(scope="module")
    def _server(tmp_path_factory):
        srv = Agentd(tmp_path_factory.mktemp(name), args, extra_asan=extra_asan, name=name)
        srv.start()
        try:
            yield srv
        finally:
            srv.stop_and_check()

    return _server


# ---- JWT -------------------------------------------------------------------

def b64url(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint_token(secret, sub="usr_e2e_alice", email=None, ttl=900, iat=None, alg="HS256", typ="access",
               iss=ISSUER, extra=None, sign_secret=None):
    """A JWT as netra-auth-service issues them; alg may be HS256, HS512 or none."""
    now = int(time.time())
    iat = now if iat is None else iat
    claims = {"sub": sub, "email": email or (sub + "@example.test"), "iat": iat, "exp": iat + ttl,
              "jti": secrets.token_hex(12), "type": typ, "iss": iss}
    if extra:
        claims.update(extra)
    header = {"alg": alg, "typ": "JWT"}
    signing_input = (b64url(json.dumps(header, separators=(",", ":"))) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")))).encode()
    key = (sign_secret or secret).encode()
    if alg == "HS256":
        sig = hmac.new(key, signing_input, hashlib.sha256).digest()
    elif alg == "HS512":
        sig = hmac.new(key, signing_input, hashlib.sha512).digest()
    elif alg == "none":
        sig = b""
    else:
        raise ValueError(alg)
    return signing_input.decode() + "." + b64url(sig)


# ---- raw HTTP --------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.header_list = headers          # [(name, value)] as received
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.header_list:
            if k.lower() == name:
                return v
        return default

    def headers_named(self, name):
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    @property
    def headers(self):
        return {k.lower(): v for k, v in self.header_list}

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.header_list, self.body[:300])


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


class HttpConn:
    """Raw HTTP/1.1 client over one TCP (optionally TLS) connection."""

    def __init__(self, addr, timeout=5.0, tls=False, rcvbuf=None):
        s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(addr)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=addr[0])
        self.sock = s
        self.addr = addr
        self.buf = b""
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, path, headers=None, body=None, host=None):
        self.send(build_request(method, path, headers, body, host or "%s:%d" % self.addr))

    def _fill(self, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed(str(e))
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("response head too large")
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        m = re.match(rb"^HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
        assert m, "bad status line %r" % lines[0]
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            headers.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
        return int(m.group(1)), (m.group(2) or b"").decode("latin-1"), headers, head

    def read_response(self, head_request=False):
        """Read one final or interim response (1xx is returned as is)."""
        status, reason, headers, raw = self.read_head()
        r = Response(status, reason, headers, b"", raw)
        if head_request or 100 <= status < 200 or status in (204, 304):
            return r
        te = (r.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size_line = self._read_line()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_line() != b"":
                        pass
                    break
                body += self._read_exact(size)
                assert self._read_exact(2) == b"\r\n"
            r.body = body
        elif r.header("content-length") is not None:
            r.body = self._read_exact(int(r.header("content-length")))
        else:
            body = self.buf
            self.buf = b""
            try:
                while True:
                    self._fill()
                    body += self.buf
                    self.buf = b""
            except (Closed, socket.timeout):
                pass
            r.body = body
        return r

    def wait_closed(self, timeout):
        """Read (and discard) until the peer closes; returns the seconds waited.
        Raises socket.timeout when still open after `timeout`."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("still open after %.1fs" % timeout)
            try:
                self._fill(timeout=left)
            except Closed:
                return time.monotonic() - t0
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - t0


def build_request(method, path, headers=None, body=None, host="localhost"):
    hdrs = [("Host", host)]
    names = set()
    for k, v in (headers.items() if isinstance(headers, dict) else (headers or [])):
        if k.lower() == "host":
            hdrs[0] = (k, v)
            continue
        hdrs.append((k, v))
        names.add(k.lower())
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    out = ("%s %s HTTP/1.1\r\n" % (method, path)).encode()
    for k, v in hdrs:
        out += ("%s: %s\r\n" % (k, v)).encode("latin-1")
    out += b"\r\n"
    if body is not None:
        out += body if isinstance(body, bytes) else body.encode()
    return out


def check_envelope(r, code, status=None):
    """SPEC conventions: the error envelope and request_id == X-Request-ID."""
    if status is not None:
        assert r.status == status, r
    assert (r.header("content-type") or "").startswith("application/json"), r
    j = r.json()
    assert j.get("error") is True, j
    assert j.get("error_code") == code, j
    assert isinstance(j.get("message"), str) and j["message"], j
    assert j.get("detail") == j.get("message"), j
    assert j.get("request_id") == r.header("x-request-id"), (j, r.header("x-request-id"))
    return j


# ---- raw WebSocket -----------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def mask_bytes(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def build_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, key=None):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = key or os.urandom(4)
        return hdr + key + mask_bytes(payload, key)
    return hdr + payload


class Frame:
    def __init__(self, fin, opcode, payload):
        self.fin, self.opcode, self.payload = fin, opcode, payload

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        return "<Frame op=%d fin=%d %r>" % (self.opcode, self.fin, self.payload[:200])


class RawWS(HttpConn):
    """A WebSocket client that speaks frames byte by byte."""

    def __init__(self, addr, path="/ws", token=None, headers=None, timeout=5.0, rcvbuf=None, tls=False,
                 handshake=True):
        super().__init__(addr, timeout=timeout, tls=tls, rcvbuf=rcvbuf)
        self.path = path
        self.token = token
        self.extra_headers = headers or []
        self.response = None
        if handshake:
            r = self.handshake()
            assert r.status == 101, "handshake refused: %r" % r

    def handshake(self):
        key = base64.b64encode(os.urandom(16)).decode()
        hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13")]
        if self.token:
            hdrs.append(("Authorization", "Bearer " + self.token))
        hdrs += list(self.extra_headers)
        self.request("GET", self.path, headers=hdrs)
        status, reason, headers, raw = self.read_head()
        r = Response(status, reason, headers, b"", raw)
        if status != 101 and r.header("content-length") is not None:
            r.body = self._read_exact(int(r.header("content-length")))
        if status == 101:
            want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                                    .digest()).decode()
            assert r.header("sec-websocket-accept") == want, r
        self.response = r
        return r

    def send_frame(self, opcode, payload=b"", **kw):
        self.send(build_frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def send_many(self, objs):
        """Several JSON text frames in one write (they reach the server together)."""
        self.send(b"".join(build_frame(OP_TEXT, json.dumps(o).encode()) for o in objs))

    def recv_frame(self, timeout=None):
        """One frame (any opcode). Raises Closed on EOF, socket.timeout on timeout."""
        old = self.timeout
        if timeout is not None:
            self.timeout = timeout
        try:
            while len(self.buf) < 2:
                self._fill()
            b0, b1 = self.buf[0], self.buf[1]
            n = b1 & 0x7F
            off = 2
            if n == 126:
                while len(self.buf) < 4:
                    self._fill()
                n = struct.unpack("!H", self.buf[2:4])[0]
                off = 4
            elif n == 127:
                while len(self.buf) < 10:
                    self._fill()
                n = struct.unpack("!Q", self.buf[2:10])[0]
                off = 10
            assert not (b1 & 0x80), "server frames must not be masked"
            while len(self.buf) < off + n:
                self._fill()
            payload = self.buf[off:off + n]
            self.buf = self.buf[off + n:]
            return Frame(bool(b0 & 0x80), b0 & 0x0F, payload)
        finally:
            self.timeout = old

    def recv_json(self, timeout=5.0):
        """The next text message as JSON (control frames skipped, pings answered)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no text frame within %.1fs" % timeout)
            f = self.recv_frame(timeout=left)
            if f.opcode == OP_TEXT:
                return f.json()
            if f.opcode == OP_PING:
                self.send_frame(OP_PONG, f.payload)
            elif f.opcode == OP_CLOSE:
                raise Closed("close frame %r" % f.close_code)

    def read_close(self, timeout=5.0):
        """Read until a close frame; returns its code (None if EOF came without one)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no close frame within %.1fs" % timeout)
            try:
                f = self.recv_frame(timeout=left)
            except Closed:
                return None
            if f.opcode == OP_CLOSE:
                return f.close_code


def check_welcome(msg, user_id, max_message_size=65536):
    """SPEC §6 first frame."""
    assert msg.get("type") == "system_message", msg
    assert msg.get("event") == "connection_established", msg
    assert msg.get("connection_ready") is True, msg
    assert isinstance(msg.get("timestamp"), (int, float)), msg
    d = msg.get("data")
    assert isinstance(d, dict), msg
    assert d.get("event") == "connection_established", msg
    assert d.get("connection_ready") is True, msg
    assert isinstance(d.get("connection_id"), str) and d["connection_id"], msg
    assert d.get("user_id") == user_id, msg
    assert isinstance(d.get("server_time"), (int, float, str)), msg
    cfg = d.get("config")
    assert isinstance(cfg, dict), msg
    assert isinstance(cfg.get("heartbeat_interval"), (int, float)), msg
    assert cfg.get("max_message_size") == max_message_size, msg
