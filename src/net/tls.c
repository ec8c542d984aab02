/* net/tls.c — server-side TLS over memory BIOs (SPEC §10 --tls-cert/--tls-key).
 *
 * Each tls_conn_t is one SSL with a read BIO (ciphertext from the socket) and a
 * write BIO (ciphertext for the socket), both BIO_s_mem: the conn layer keeps
 * the socket, we only turn bytes into bytes.  To keep 10,000 idle connections
 * cheap, SSL_MODE_RELEASE_BUFFERS frees OpenSSL's record buffers when they are
 * empty, and tls__trim() swaps a drained memory BIO that holds storage for a
 * fresh one (a mem BIO never shrinks by itself).  Loop thread only.
 */
#include "net/tls.h"

#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "util/err.h"

/* Largest plaintext of one TLS record: our read and write step. */
#define TLS_CHUNK 16384
/* Bytes handed to SSL_write_ex at once, drained between steps so the write BIO
 * never holds more than this (plus record overhead). */
#define TLS_WRITE_STEP (4 * TLS_CHUNK)

struct tls_ctx {
  SSL_CTX *ssl_ctx;
};

struct tls_conn {
  SSL *ssl;
  BIO *rbio;       /* ciphertext in; owned by ssl */
  BIO *wbio;       /* ciphertext out; owned by ssl */
  int established; /* handshake completed */
  int peer_closed; /* close_notify received */
  int failed;      /* fatal protocol error: every later call fails */
  int shut;        /* our close_notify was produced */
};

/* ---- helpers ------------------------------------------------------------ */

static void tls__oom(void) {
  fputs("agentd: out of memory (OpenSSL)\n", stderr);
  abort();
}

static BIO *tls__mem_bio(void) {
  BIO *b = BIO_new(BIO_s_mem());
  if (b == NULL) tls__oom();
  /* Empty reads mean "retry" (SSL_ERROR_WANT_READ), never EOF: the default for
   * a read-write mem BIO, set explicitly because correctness depends on it. */
  BIO_set_mem_eof_return(b, -1);
  return b;
}

/* Bytes of storage a memory BIO holds (content or not). */
static size_t tls__bio_cap(BIO *b) {
  BUF_MEM *bm = NULL;
  BIO_get_mem_ptr(b, &bm);
  return bm != NULL ? bm->max : 0;
}

/* Free the storage of drained memory BIOs by replacing them: an idle connection
 * then holds no ciphertext buffer at all. */
static void tls__trim(tls_conn_t *t) {
  if (BIO_ctrl_pending(t->rbio) == 0 && tls__bio_cap(t->rbio) > 0) {
    BIO *b = tls__mem_bio();
    SSL_set0_rbio(t->ssl, b); /* frees the old one */
    t->rbio = b;
  }
  if (BIO_ctrl_pending(t->wbio) == 0 && tls__bio_cap(t->wbio) > 0) {
    BIO *b = tls__mem_bio();
    SSL_set0_wbio(t->ssl, b);
    t->wbio = b;
  }
}

/* Move everything OpenSSL wrote to the peer into out. 0 or AGD_ETOO_LARGE. */
static int tls__drain(tls_conn_t *t, buf_t *out) {
  size_t pend;
  while ((pend = BIO_ctrl_pending(t->wbio)) > 0) {
    int want = pend > INT_MAX ? INT_MAX : (int)pend;
    char *d = buf_reserve(out, (size_t)want);
    if (d == NULL) return ERR(AGD_ETOO_LARGE);
    int got = BIO_read(t->wbio, d, want);
    if (got <= 0) break; /* cannot happen with pending > 0 */
    buf_commit(out, (size_t)got);
  }
  return 0;
}

/* The first (root-cause) entry of the thread's OpenSSL error queue, as words a
 * person can act on; empties the queue.  tmp holds system error text. */
static const char *tls__reason(char *tmp, size_t cap) {
  unsigned long first = ERR_get_error(), e;
  while ((e = ERR_get_error()) != 0) {
  }
  if (first == 0) return "unknown error";
  if (ERR_SYSTEM_ERROR(first)) /* fopen() and friends: OpenSSL 3.0 has no string */
    return strerror_r(ERR_GET_REASON(first), tmp, cap);
  if (ERR_GET_REASON(first) == ERR_R_INTERRUPTED_OR_CANCELLED) /* on_no_password() said no */
    return "encrypted private keys are not supported";
  if (ERR_GET_LIB(first) == ERR_LIB_OSSL_DECODER && ERR_GET_REASON(first) == ERR_R_UNSUPPORTED)
    return "no PEM private key found";
  const char *r = ERR_reason_error_string(first);
  return r != NULL ? r : "unknown error";
}

/* snprintf into err, then keep it one line whatever the path holds. */
static void tls__errf(char *err, size_t err_cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tls__errf(char *err, size_t err_cap, const char *fmt, ...) {
  if (err == NULL || err_cap == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_cap, fmt, ap);
  va_end(ap);
  for (char *p = err; *p != '\0'; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
}

/* Never prompt on the terminal for a pass phrase: encrypted keys just fail. */
static int on_no_password(char *buf, int size, int rwflag, void *u) { return -1; }

/* ALPN: pick "http/1.1" when the client offers it; otherwise carry on without
 * ALPN (no alert: HTTP/1.1 is all we speak anyway). */
static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg) {
  static const unsigned char ours[] = "\x08http/1.1";
  unsigned char *sel = NULL;
  unsigned char sel_len = 0;
  if (SSL_select_next_proto(&sel, &sel_len, ours, sizeof ours - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  *outlen = sel_len;
  return SSL_TLSEXT_ERR_OK;
}

/* ---- context ------------------------------------------------------------- */

int tls_ctx_open(tls_ctx_t **out, const char *cert_path, const char *key_path, char *err, size_t err_cap) {
  assert(out != NULL && cert_path != NULL && key_path != NULL);
  *out = NULL;
  ERR_clear_error();

  char tmp[128];
  SSL_CTX *c = SSL_CTX_new(TLS_server_method());
  if (c == NULL) {
    tls__errf(err, err_cap, "--tls-cert: cannot set up TLS: %s", tls__reason(tmp, sizeof tmp));
    return -1;
  }
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_session_id_context(c, (const unsigned char *)"agentd", 6);
  SSL_CTX_set_alpn_select_cb(c, on_alpn_select, NULL);
  SSL_CTX_set_default_passwd_cb(c, on_no_password);

  if (SSL_CTX_use_certificate_chain_file(c, cert_path) != 1) {
    tls__errf(err, err_cap, "--tls-cert: cannot load '%s': %s", cert_path, tls__reason(tmp, sizeof tmp));
    goto fail;
  }

  /* Parse the key ourselves so "cannot read" and "wrong key" get their own words
   * (SSL_CTX_use_PrivateKey_file reports both as a load failure). */
  EVP_PKEY *pkey = NULL;
  BIO *kb = BIO_new_file(key_path, "r");
  if (kb != NULL) {
    pkey = PEM_read_bio_PrivateKey(kb, NULL, on_no_password, NULL);
    BIO_free(kb);
  }
  if (pkey == NULL) {
    tls__errf(err, err_cap, "--tls-key: cannot load '%s': %s", key_path, tls__reason(tmp, sizeof tmp));
    goto fail;
  }
  X509 *leaf = SSL_CTX_get0_certificate(c);
  int ok = leaf != NULL && X509_check_private_key(leaf, pkey) == 1 && SSL_CTX_use_PrivateKey(c, pkey) == 1 &&
           SSL_CTX_check_private_key(c) == 1;
  EVP_PKEY_free(pkey);
  if (!ok) {
    ERR_clear_error();
    tls__errf(err, err_cap, "--tls-key: does not match --tls-cert");
    goto fail;
  }

  tls_ctx_t *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) tls__oom();
  ctx->ssl_ctx = c;
  *out = ctx;
  return 0;

fail:
  ERR_clear_error();
  SSL_CTX_free(c);
  return -1;
}

void tls_ctx_close(tls_ctx_t *ctx) {
  if (ctx == NULL) return;
  SSL_CTX_free(ctx->ssl_ctx); /* each SSL holds its own reference */
  free(ctx);
}

/* ---- connections ---------------------------------------------------------- */

tls_conn_t *tls_conn_new(tls_ctx_t *ctx) {
  assert(ctx != NULL);
  tls_conn_t *t = calloc(1, sizeof *t);
  if (t == NULL) tls__oom();
  t->ssl = SSL_new(ctx->ssl_ctx);
  if (t->ssl == NULL) tls__oom();
  t->rbio = tls__mem_bio();
  t->wbio = tls__mem_bio();
  SSL_set_bio(t->ssl, t->rbio, t->wbio); /* ssl owns both */
  SSL_set_accept_state(t->ssl);
  return t;
}

void tls_conn_free(tls_conn_t *t) {
  if (t == NULL) return;
  SSL_free(t->ssl);
  free(t);
}

/* Drive the handshake, then decrypt into plain until OpenSSL wants more input. */
static int tls__pump(tls_conn_t *t, buf_t *plain) {
  if (!t->established) {
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
      int e = SSL_get_error(t->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
      t->failed = 1;
      return ERR(AGD_EBAD_REQUEST);
    }
    t->established = 1;
  }
  for (;;) {
    /* Size the reservation by what may come out: decrypted bytes already held,
     * else the ciphertext waiting (an upper bound for its plaintext).  A caller's
     * buffer then grows by what the peer sent, not by a whole record each time. */
    size_t want = (size_t)SSL_pending(t->ssl);
    if (want == 0) want = BIO_ctrl_pending(t->rbio);
    if (want == 0) {
      if (!SSL_has_pending(t->ssl)) return 0; /* nothing left to decrypt */
      want = TLS_CHUNK;                       /* a partial record inside OpenSSL */
    }
    if (want > TLS_CHUNK) want = TLS_CHUNK;
    char *d = buf_reserve(plain, want);
    while (d == NULL && want > 1) { /* near the limit: take what still fits */
      want /= 2;
      d = buf_reserve(plain, want);
    }

    size_t got = 0;
    int r;
    ERR_clear_error();
    if (d != NULL) {
      r = SSL_read_ex(t->ssl, d, want, &got);
      if (r == 1) {
        buf_commit(plain, got);
        continue;
      }
    } else {
      /* plain is full: too large only if application bytes really wait (a
       * partial record or a close_notify is no overflow).  Peek consumes none. */
      char probe;
      r = SSL_peek_ex(t->ssl, &probe, 1, &got);
      if (r == 1) return ERR(AGD_ETOO_LARGE);
    }
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: /* a mem BIO never blocks; treat like WANT_READ */
      return 0;
    case SSL_ERROR_ZERO_RETURN:
      t->peer_closed = 1;
      return 0;
    default:
      t->failed = 1;
      return ERR(AGD_EBAD_REQUEST);
    }
  }
}

int tls_conn_read(tls_conn_t *t, const char *in, size_t n, buf_t *plain, buf_t *out) {
  assert(t != NULL && plain != NULL && out != NULL);
  if (t->failed) return ERR(AGD_EBAD_REQUEST);
  for (size_t off = 0; off < n;) { /* a mem BIO takes everything, INT_MAX at a time */
    int step = n - off > INT_MAX ? INT_MAX : (int)(n - off);
    int w = BIO_write(t->rbio, in + off, step);
    if (w <= 0) tls__oom();
    off += (size_t)w;
  }
  int rc = tls__pump(t, plain);
  int drc = tls__drain(t, out); /* handshake records, tickets, alerts */
  ERR_clear_error();
  if (rc == 0) rc = drc;
  tls__trim(t);
  return rc;
}

int tls_conn_write(tls_conn_t *t, const char *p, size_t n, buf_t *out) {
  assert(t != NULL && out != NULL);
  if (t->failed || !t->established || t->shut) return ERR(AGD_EINTERNAL);
  int rc = 0;
  for (size_t off = 0; off < n && rc == 0;) {
    size_t step = n - off > TLS_WRITE_STEP ? TLS_WRITE_STEP : n - off;
    size_t written = 0;
    ERR_clear_error();
    /* Partial writes are off and the mem BIO never blocks: all or an error. */
    if (SSL_write_ex(t->ssl, p + off, step, &written) != 1 || written != step) {
      t->failed = 1;
      ERR_clear_error();
      rc = ERR(AGD_EINTERNAL);
    } else {
      off += written;
    }
    int drc = tls__drain(t, out);
    if (rc == 0) rc = drc;
  }
  tls__trim(t);
  return rc;
}

void tls_conn_shutdown(tls_conn_t *t, buf_t *out) {
  assert(t != NULL && out != NULL);
  if (!t->established || t->failed || t->shut) return;
  t->shut = 1;
  ERR_clear_error();
  SSL_shutdown(t->ssl); /* 0: close_notify sent, the peer's not (yet) seen: fine */
  ERR_clear_error();
  (void)tls__drain(t, out);
  tls__trim(t);
}

int tls_conn_established(const tls_conn_t *t) { return t->established; }

int tls_conn_peer_closed(const tls_conn_t *t) { return t->peer_closed; }
