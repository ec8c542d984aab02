/* tests/unit/test_tls.c — net/tls.c against a real OpenSSL client over memory BIOs.
 *
 * Each test gets a fresh directory in /tmp with a self-signed P-256 certificate
 * for "localhost" and keys that do not match it, all built with OpenSSL here.
 * The client is an ordinary SSL with memory BIOs; bytes are shuttled by hand.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "net/tls.h"
#include "util/buf.h"
#include "util/err.h"

static char dir[64];
static char cert_path[128], key_path[128], other_key_path[128], ed_key_path[128], junk_path[128];

/* ---- fixture: certificate and keys ------------------------------------------ */

static void write_key(const char *path, EVP_PKEY *k) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  cr_assert_eq(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
}

static X509 *make_cert(EVP_PKEY *k) {
  X509 *x = X509_new();
  cr_assert_not_null(x);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, k);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost");
  cr_assert_not_null(ext);
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  cr_assert_gt(X509_sign(x, k, EVP_sha256()), 0);
  return x;
}

static void setup(void) {
  strcpy(dir, "/tmp/agentd_tls_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
  snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
  snprintf(other_key_path, sizeof other_key_path, "%s/other.pem", dir);
  snprintf(ed_key_path, sizeof ed_key_path, "%s/ed.pem", dir);
  snprintf(junk_path, sizeof junk_path, "%s/junk.pem", dir);

  EVP_PKEY *k = EVP_EC_gen("P-256");
  EVP_PKEY *other = EVP_EC_gen("P-256");
  EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  cr_assert(k && other && ed);
  X509 *x = make_cert(k);
  FILE *f = fopen(cert_path, "w");
  cr_assert_not_null(f);
  cr_assert_eq(PEM_write_X509(f, x), 1);
  fclose(f);
  write_key(key_path, k);
  write_key(other_key_path, other);
  write_key(ed_key_path, ed);
  f = fopen(junk_path, "w");
  cr_assert_not_null(f);
  fputs("this is not PEM\n", f);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(k);
  EVP_PKEY_free(other);
  EVP_PKEY_free(ed);
}

static void teardown(void) {
  unlink(cert_path);
  unlink(key_path);
  unlink(other_key_path);
  unlink(ed_key_path);
  unlink(junk_path);
  rmdir(dir);
}

TestSuite(tls, .init = setup, .fini = teardown);

/* ---- a client over memory BIOs ---------------------------------------------- */

typedef struct client {
  SSL_CTX *ctx;
  SSL *ssl;
  BIO *rbio, *wbio;
} client_t;

/* max_version 0: TLS 1.3; alpn NULL: no ALPN extension. */
static void client_init(client_t *c, int max_version, const char *alpn, unsigned alpn_len, int no_ticket) {
  c->ctx = SSL_CTX_new(TLS_client_method());
  cr_assert_not_null(c->ctx);
  cr_assert_eq(SSL_CTX_load_verify_locations(c->ctx, cert_path, NULL), 1);
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  if (max_version) SSL_CTX_set_max_proto_version(c->ctx, max_version);
  if (no_ticket) SSL_CTX_set_options(c->ctx, SSL_OP_NO_TICKET);
  c->ssl = SSL_new(c->ctx);
  cr_assert_not_null(c->ssl);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_connect_state(c->ssl);
  SSL_set_tlsext_host_name(c->ssl, "localhost");
  cr_assert_eq(SSL_set1_host(c->ssl, "localhost"), 1);
  if (alpn) cr_assert_eq(SSL_set_alpn_protos(c->ssl, (const unsigned char *)alpn, alpn_len), 0);
}

static void client_dispose(client_t *c) {
  SSL_free(c->ssl);
  SSL_CTX_free(c->ctx);
}

/* Ciphertext the client wants to send, moved into b. */
static void client_take(client_t *c, buf_t *b) {
  char tmp[4096];
  int n;
  while ((n = BIO_read(c->wbio, tmp, sizeof tmp)) > 0) cr_assert_eq(buf_append(b, tmp, (size_t)n), 0);
}

/* Decrypted bytes the client got, appended to b; returns SSL_get_error of the last read. */
static int client_read(client_t *c, buf_t *b) {
  char tmp[4096];
  size_t got;
  while (SSL_read_ex(c->ssl, tmp, sizeof tmp, &got) == 1) cr_assert_eq(buf_append(b, tmp, got), 0);
  return SSL_get_error(c->ssl, 0);
}

/* Pump bytes both ways until neither side has anything to say.  `step` > 0
 * feeds the server that many bytes per call (partial records).  Returns the
 * first non-zero tls_conn_read() result, else 0. */
static int shuttle(client_t *c, tls_conn_t *s, buf_t *plain, size_t step) {
  buf_t wire, out;
  buf_init(&wire, 0);
  buf_init(&out, 0);
  int rc = 0;
  for (int round = 0; round < 50 && rc == 0; round++) {
    if (!SSL_is_init_finished(c->ssl)) {
      ERR_clear_error();
      SSL_do_handshake(c->ssl);
    }
    buf_reset(&wire);
    client_take(c, &wire);
    if (wire.len == 0 && round > 0) break;
    for (size_t off = 0; off < wire.len && rc == 0;) {
      size_t n = step && step < wire.len - off ? step : wire.len - off;
      rc = tls_conn_read(s, wire.base + off, n, plain, &out);
      off += n;
    }
    if (out.len) cr_assert_eq(BIO_write(c->rbio, out.base, (int)out.len), (int)out.len);
    buf_reset(&out);
  }
  buf_dispose(&wire);
  buf_dispose(&out);
  return rc;
}

static tls_ctx_t *open_ctx(void) {
  tls_ctx_t *ctx = NULL;
  char err[256] = "";
  cr_assert_eq(tls_ctx_open(&ctx, cert_path, key_path, err, sizeof err), 0, "%s", err);
  cr_assert_not_null(ctx);
  return ctx;
}

/* Handshake, one request one way, one reply the other, close_notify both ways. */
static void round_trip(int max_version, const char *alpn, unsigned alpn_len, size_t step) {
  static const char req[] = "GET / HTTP/1.1\r\n\r\n";
  static const char rep[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  tls_ctx_t *ctx = open_ctx();
  tls_conn_t *s = tls_conn_new(ctx);
  client_t c;
  client_init(&c, max_version, alpn, alpn_len, 0);
  buf_t plain, out, got;
  buf_init(&plain, 65536);
  buf_init(&out, 0);
  buf_init(&got, 0);

  cr_assert_eq(tls_conn_established(s), 0);
  cr_assert_eq(shuttle(&c, s, &plain, step), 0);
  cr_assert_eq(tls_conn_established(s), 1);
  cr_assert_eq(SSL_is_init_finished(c.ssl), 1);
  cr_assert_eq(SSL_get_verify_result(c.ssl), X509_V_OK);
  if (max_version) cr_assert_eq(SSL_version(c.ssl), max_version);
  else cr_assert_eq(SSL_version(c.ssl), TLS1_3_VERSION);
  const unsigned char *sel = NULL;
  unsigned sel_len = 0;
  SSL_get0_alpn_selected(c.ssl, &sel, &sel_len);
  if (alpn) {
    cr_assert_eq(sel_len, 8);
    cr_assert_eq(memcmp(sel, "http/1.1", 8), 0);
  } else {
    cr_assert_eq(sel_len, 0);
  }
  cr_assert_eq(plain.len, 0);

  size_t w = 0;
  cr_assert_eq(SSL_write_ex(c.ssl, req, sizeof req - 1, &w), 1);
  cr_assert_eq(shuttle(&c, s, &plain, step), 0);
  cr_assert_eq(plain.len, sizeof req - 1);
  cr_assert_eq(memcmp(plain.base, req, plain.len), 0);

  cr_assert_eq(tls_conn_write(s, rep, sizeof rep - 1, &out), 0);
  cr_assert_gt(out.len, sizeof rep - 1);
  cr_assert_eq(BIO_write(c.rbio, out.base, (int)out.len), (int)out.len);
  buf_reset(&out);
  cr_assert_eq(client_read(&c, &got), SSL_ERROR_WANT_READ);
  cr_assert_eq(got.len, sizeof rep - 1);
  cr_assert_eq(memcmp(got.base, rep, got.len), 0);

  /* client close_notify → peer_closed, read returns 0 */
  cr_assert_eq(tls_conn_peer_closed(s), 0);
  SSL_shutdown(c.ssl);
  buf_reset(&plain);
  cr_assert_eq(shuttle(&c, s, &plain, step), 0);
  cr_assert_eq(tls_conn_peer_closed(s), 1);
  cr_assert_eq(plain.len, 0);

  /* our close_notify reaches the client */
  tls_conn_shutdown(s, &out);
  cr_assert_gt(out.len, 0);
  cr_assert_eq(BIO_write(c.rbio, out.base, (int)out.len), (int)out.len);
  cr_assert_eq(client_read(&c, &got), SSL_ERROR_ZERO_RETURN);
  buf_reset(&out);
  tls_conn_shutdown(s, &out); /* twice: nothing more */
  cr_assert_eq(out.len, 0);
  cr_assert_eq(tls_conn_write(s, "x", 1, &out), AGD_EINTERNAL);

  buf_dispose(&plain);
  buf_dispose(&out);
  buf_dispose(&got);
  client_dispose(&c);
  tls_conn_free(s);
  tls_ctx_close(ctx);
}

/* ---- tests ---------------------------------------------------------------------- */

Test(tls, handshake_tls13_alpn) { round_trip(0, "\x02h2\x08http/1.1", 12, 0); }

Test(tls, handshake_tls12) { round_trip(TLS1_2_VERSION, "\x08http/1.1", 9, 0); }

Test(tls, handshake_without_alpn) { round_trip(0, NULL, 0, 0); }

Test(tls, alpn_not_offered_is_not_fatal) {
  /* a client that only offers h2 still gets a connection, with no ALPN */
  tls_ctx_t *ctx = open_ctx();
  tls_conn_t *s = tls_conn_new(ctx);
  client_t c;
  client_init(&c, 0, "\x02h2", 3, 0);
  buf_t plain;
  buf_init(&plain, 0);
  cr_assert_eq(shuttle(&c, s, &plain, 0), 0);
  cr_assert_eq(tls_conn_established(s), 1);
  const unsigned char *sel = NULL;
  unsigned sel_len = 0;
  SSL_get0_alpn_selected(c.ssl, &sel, &sel_len);
  cr_assert_eq(sel_len, 0);
  buf_dispose(&plain);
  client_dispose(&c);
  tls_conn_free(s);
  tls_ctx_close(ctx);
}

Test(tls, byte_at_a_time) {
  round_trip(0, "\x08http/1.1", 9, 1);
  round_trip(TLS1_2_VERSION, NULL, 0, 1);
}

Test(tls, large_transfer_both_ways) {
  enum { N = 200000 };
  char *big = malloc(N);
  for (size_t i = 0; i < N; i++) big[i] = (char)('a' + i % 26);
  tls_ctx_t *ctx = open_ctx();
  tls_conn_t *s = tls_conn_new(ctx);
  client_t c;
  client_init(&c, 0, NULL, 0, 0);
  buf_t plain, out, got;
  buf_init(&plain, N);
  buf_init(&out, 0);
  buf_init(&got, 0);
  cr_assert_eq(shuttle(&c, s, &plain, 0), 0);
  size_t w = 0;
  cr_assert_eq(SSL_write_ex(c.ssl, big, N, &w), 1);
  cr_assert_eq(shuttle(&c, s, &plain, 7000), 0);
  cr_assert_eq(plain.len, N); /* exactly at the limit is fine */
  cr_assert_eq(memcmp(plain.base, big, N), 0);

  cr_assert_eq(tls_conn_write(s, big, N, &out), 0);
  cr_assert_eq(BIO_write(c.rbio, out.base, (int)out.len), (int)out.len);
  cr_assert_eq(client_read(&c, &got), SSL_ERROR_WANT_READ);
  cr_assert_eq(got.len, N);
  cr_assert_eq(memcmp(got.base, big, N), 0);
  cr_assert_eq(tls_conn_write(s, big, 0, &out), 0);

  free(big);
  buf_dispose(&plain);
  buf_dispose(&out);
  buf_dispose(&got);
  client_dispose(&c);
  tls_conn_free(s);
  tls_ctx_close(ctx);
}

Test(tls, plain_limit_is_too_large) {
  tls_ctx_t *ctx = open_ctx();
  tls_conn_t *s = tls_conn_new(ctx);
  client_t c;
  client_init(&c, 0, NULL, 0, 0);
  buf_t plain;
  buf_init(&plain, 10);
  cr_assert_eq(shuttle(&c, s, &plain, 0), 0);
  size_t w = 0;
  /* limit 10: 10 bytes fit (−1 and = tested by the fill), the 11th does not */
  cr_assert_eq(SSL_write_ex(c.ssl, "0123456789", 10, &w), 1);
  cr_assert_eq(shuttle(&c, s, &plain, 0), 0);
  cr_assert_eq(plain.len, 10);
  buf_reset(&plain);
  cr_assert_eq(SSL_write_ex(c.ssl, "0123456789A", 11, &w), 1);
  cr_assert_eq(shuttle(&c, s, &plain, 0), AGD_ETOO_LARGE);
  cr_assert_eq(plain.len, 10);
  cr_assert_eq(memcmp(plain.base, "0123456789", 10), 0);
  buf_dispose(&plain);
  client_dispose(&c);
  tls_conn_free(s);
  tls_ctx_close(ctx);
}

Test(tls, full_plain_is_not_too_large_without_more_data) {
  /* plain exactly full while only a partial record, or a close_notify, waits:
   * no overflow yet; the caller consumes and the rest arrives. */
  tls_ctx_t *ctx = open_ctx();
  tls_conn_t *s = tls_conn_new(ctx);
  client_t c;
  client_init(&c, 0, NULL, 0, 0);
  buf_t plain, wire, out;
  buf_init(&plain, 10);
  buf_init(&wire, 0);
  buf_init(&out, 0);
  cr_assert_eq(shuttle(&c, s, &plain, 0), 0);
  size_t w = 0;
  cr_assert_eq(SSL_write_ex(c.ssl, "0123456789", 10, &w), 1);
  client_take(&c, &wire);
  size_t first = wire.len;
  cr_assert_eq(SSL_write_ex(c.ssl, "abc", 3, &w), 1);
  client_take(&c, &wire);
  cr_assert_eq(tls_conn_read(s, wire.base, first + 3, &plain, &out), 0);
  cr_assert_eq(plain.len, 10);
  buf_reset(&plain); /* the caller consumed the request */
  cr_assert_eq(tls_conn_read(s, wire.base + first + 3, wire.len - first - 3, &plain, &out), 0);
  cr_assert_eq(plain.len, 3);
  cr_assert_eq(memcmp(plain.base, "abc", 3), 0);

  /* exactly full, then close_notify in the same bytes */
  buf_reset(&plain);
  buf_reset(&wire);
  cr_assert_eq(SSL_write_ex(c.ssl, "ABCDEFGHIJ", 10, &w), 1);
  SSL_shutdown(c.ssl);
  client_take(&c, &wire);
  cr_assert_eq(tls_conn_read(s, wire.base, wire.len, &plain, &out), 0);
  cr_assert_eq(plain.len, 10);
  cr_assert_eq(tls_conn_peer_closed(s), 1);

  buf_dispose(&plain);
  buf_dispose(&wire);
  buf_dispose(&out);
  client_dispose(&c);
  tls_conn_free(s);
  tls_ctx_close(ctx);
}

Test(tls, garbage_first_flight_is_bad_request) {
  tls_ctx_t *ctx = open_ctx();
  buf_t plain, out;
  buf_init(&plain, 0);
  buf_init(&out, 0);

  /* a handshake record whose body is nonsense: OpenSSL answers with an alert */
  tls_conn_t *s = tls_conn_new(ctx);
  static const char bad_hello[] = "\x16\x03\x01\x00\x08\x01\x00\x00\x04garb";
  cr_assert_eq(tls_conn_read(s, bad_hello, sizeof bad_hello - 1, &plain, &out), AGD_EBAD_REQUEST);
  cr_assert_gt(out.len, 0);
  cr_assert_eq((unsigned char)out.base[0], 0x15); /* alert record */
  cr_assert_eq(plain.len, 0);
  cr_assert_eq(tls_conn_established(s), 0);
  buf_reset(&out);
  /* the session stays failed */
  cr_assert_eq(tls_conn_read(s, bad_hello, sizeof bad_hello - 1, &plain, &out), AGD_EBAD_REQUEST);
  cr_assert_eq(tls_conn_write(s, "x", 1, &out), AGD_EINTERNAL);
  tls_conn_shutdown(s, &out);
  cr_assert_eq(out.len, 0);
  tls_conn_free(s);

  /* plain HTTP and random bytes */
  static const char *junk[] = {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\xff\xfe\x00\x01garbage garbage garbage"};
  static const size_t junk_len[] = {27, 27};
  for (int i = 0; i < 2; i++) {
    s = tls_conn_new(ctx);
    buf_reset(&out);
    cr_assert_eq(tls_conn_read(s, junk[i], junk_len[i], &plain, &out), AGD_EBAD_REQUEST, "junk %d", i);
    cr_assert_eq(plain.len, 0);
    tls_conn_free(s);
  }
  buf_dispose(&plain);
  buf_dispose(&out);
  tls_ctx_close(ctx);
}

Test(tls, write_before_handshake_fails) {
  tls_ctx_t *ctx = open_ctx();
  tls_conn_t *s = tls_conn_new(ctx);
  buf_t out;
  buf_init(&out, 0);
  cr_assert_eq(tls_conn_write(s, "hello", 5, &out), AGD_EINTERNAL);
  cr_assert_eq(out.len, 0);
  tls_conn_shutdown(s, &out);
  cr_assert_eq(out.len, 0);
  /* nothing fed yet: a read of zero bytes is a no-op */
  buf_t plain;
  buf_init(&plain, 0);
  cr_assert_eq(tls_conn_read(s, "", 0, &plain, &out), 0);
  cr_assert_eq(plain.len, 0);
  cr_assert_eq(out.len, 0);
  buf_dispose(&plain);
  buf_dispose(&out);
  tls_conn_free(s);
  tls_ctx_close(ctx);
}

Test(tls, out_at_limit_is_too_large) {
  tls_ctx_t *ctx = open_ctx();
  tls_conn_t *s = tls_conn_new(ctx);
  client_t c;
  client_init(&c, 0, NULL, 0, 0);
  buf_t wire, plain, out;
  buf_init(&wire, 0);
  buf_init(&plain, 0);
  buf_init(&out, 16); /* the ServerHello flight is far bigger */
  SSL_do_handshake(c.ssl);
  client_take(&c, &wire);
  cr_assert_eq(tls_conn_read(s, wire.base, wire.len, &plain, &out), AGD_ETOO_LARGE);
  buf_dispose(&wire);
  buf_dispose(&plain);
  buf_dispose(&out);
  client_dispose(&c);
  tls_conn_free(s);
  tls_ctx_close(ctx);
}

Test(tls, session_cache_resumes_tls12) {
  tls_ctx_t *ctx = open_ctx();
  SSL_SESSION *sess = NULL;
  for (int i = 0; i < 2; i++) {
    tls_conn_t *s = tls_conn_new(ctx);
    client_t c;
    client_init(&c, TLS1_2_VERSION, NULL, 0, 1); /* no tickets: the server's cache must do it */
    if (sess) SSL_set_session(c.ssl, sess);
    buf_t plain;
    buf_init(&plain, 0);
    cr_assert_eq(shuttle(&c, s, &plain, 0), 0);
    cr_assert_eq(tls_conn_established(s), 1);
    if (i == 0) {
      cr_assert_eq(SSL_session_reused(c.ssl), 0);
      sess = SSL_get1_session(c.ssl);
      cr_assert_not_null(sess);
    } else {
      cr_assert_eq(SSL_session_reused(c.ssl), 1);
    }
    /* OpenSSL forgets a session that ended without close_notify, on either side */
    SSL_shutdown(c.ssl);
    buf_t out;
    buf_init(&out, 0);
    tls_conn_shutdown(s, &out);
    cr_assert_gt(out.len, 0);
    buf_dispose(&out);
    buf_dispose(&plain);
    client_dispose(&c);
    tls_conn_free(s);
  }
  SSL_SESSION_free(sess);
  tls_ctx_close(ctx);
}

Test(tls, conn_outlives_ctx_close) {
  tls_ctx_t *ctx = open_ctx();
  tls_conn_t *s = tls_conn_new(ctx);
  tls_ctx_close(ctx);
  client_t c;
  client_init(&c, 0, NULL, 0, 0);
  buf_t plain;
  buf_init(&plain, 0);
  cr_assert_eq(shuttle(&c, s, &plain, 0), 0);
  cr_assert_eq(tls_conn_established(s), 1);
  buf_dispose(&plain);
  client_dispose(&c);
  tls_conn_free(s);
}

/* 10,000 idle connections: after traffic, a connection keeps no record buffers
 * (SSL_MODE_RELEASE_BUFFERS) and no memory-BIO storage (tls__trim).  A fresh SSL
 * costs ~9 KB; with OpenSSL's 16 KB buffers kept it would be ~47 KB, with a
 * 64 KB request left in the read BIO over 100 KB.  Measured with ASan's
 * allocator (skipped in a build without it). */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

Test(tls, idle_connection_holds_no_buffers) {
  if (__sanitizer_get_current_allocated_bytes == NULL) cr_skip_test("needs ASan's allocator statistics");
  enum { K = 8, BIG = 65536 };
  char *big = malloc(BIG);
  memset(big, 'x', BIG);
  tls_ctx_t *ctx = open_ctx();
  tls_conn_t *s[K];
  client_t c[K];
  for (int i = 0; i < K; i++) {
    client_init(&c[i], i % 2 ? TLS1_2_VERSION : 0, NULL, 0, 0);
    s[i] = tls_conn_new(ctx);
    buf_t plain, out, got;
    buf_init(&plain, 0);
    buf_init(&out, 0);
    buf_init(&got, 0);
    cr_assert_eq(shuttle(&c[i], s[i], &plain, 0), 0);
    size_t w;
    cr_assert_eq(SSL_write_ex(c[i].ssl, big, BIG, &w), 1);
    cr_assert_eq(shuttle(&c[i], s[i], &plain, 0), 0);
    cr_assert_eq(plain.len, BIG);
    cr_assert_eq(tls_conn_write(s[i], big, BIG, &out), 0);
    cr_assert_eq(BIO_write(c[i].rbio, out.base, (int)out.len), (int)out.len);
    client_read(&c[i], &got);
    cr_assert_eq(got.len, BIG);
    buf_dispose(&plain);
    buf_dispose(&out);
    buf_dispose(&got);
  }
  for (int i = 0; i < K; i++) client_dispose(&c[i]);
  size_t with = __sanitizer_get_current_allocated_bytes();
  for (int i = 0; i < K; i++) tls_conn_free(s[i]);
  size_t without = __sanitizer_get_current_allocated_bytes();
  size_t per_conn = (with - without) / K;
  cr_assert_lt(per_conn, 20000, "an idle TLS connection holds %zu bytes", per_conn);
  tls_ctx_close(ctx);
  free(big);
}

/* ---- tls_ctx_open errors: one line, naming the option ---------------------------- */

/* `prefix` ending in a space: the OpenSSL reason follows; else the whole message. */
static void expect_open_error(const char *cert, const char *key, const char *prefix) {
  tls_ctx_t *ctx = (tls_ctx_t *)&ctx; /* must be reset to NULL */
  char err[512] = "";
  cr_assert_eq(tls_ctx_open(&ctx, cert, key, err, sizeof err), -1);
  cr_assert_null(ctx);
  cr_assert_eq(strncmp(err, prefix, strlen(prefix)), 0, "got: %s", err);
  if (prefix[strlen(prefix) - 1] == ' ') cr_assert_gt(strlen(err), strlen(prefix), "no reason: %s", err);
  else cr_assert_str_eq(err, prefix);
  cr_assert_null(strchr(err, '\n'), "got: %s", err);
  cr_assert_eq(ERR_peek_error(), 0, "error queue left dirty");
}

Test(tls, missing_cert_names_tls_cert) {
  char missing[160];
  snprintf(missing, sizeof missing, "%s/nope.pem", dir);
  char want[256];
  snprintf(want, sizeof want, "--tls-cert: cannot load '%s': ", missing);
  snprintf(want, sizeof want, "--tls-cert: cannot load '%s': No such file or directory", missing);
  expect_open_error(missing, key_path, want);
}

Test(tls, junk_cert_names_tls_cert) {
  char want[256];
  snprintf(want, sizeof want, "--tls-cert: cannot load '%s': ", junk_path);
  expect_open_error(junk_path, key_path, want);
  /* a key file where the certificate should be */
  snprintf(want, sizeof want, "--tls-cert: cannot load '%s': ", key_path);
  expect_open_error(key_path, key_path, want);
}

Test(tls, missing_or_junk_key_names_tls_key) {
  char missing[160], want[256];
  snprintf(missing, sizeof missing, "%s/nope.pem", dir);
  snprintf(want, sizeof want, "--tls-key: cannot load '%s': ", missing);
  expect_open_error(cert_path, missing, want);
  snprintf(want, sizeof want, "--tls-key: cannot load '%s': ", junk_path);
  expect_open_error(cert_path, junk_path, want);
  snprintf(want, sizeof want, "--tls-key: cannot load '%s': ", cert_path);
  expect_open_error(cert_path, cert_path, want);
}

Test(tls, encrypted_key_fails_without_prompting) {
  /* no pass phrase support: must fail at once, never read the terminal */
  char enc[160], want[256];
  snprintf(enc, sizeof enc, "%s/enc.pem", dir);
  BIO *in = BIO_new_file(key_path, "r");
  EVP_PKEY *k = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
  BIO_free(in);
  cr_assert_not_null(k);
  FILE *f = fopen(enc, "w");
  cr_assert_eq(PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)"secret"), 1);
  fclose(f);
  EVP_PKEY_free(k);
  snprintf(want, sizeof want, "--tls-key: cannot load '%s': encrypted private keys are not supported", enc);
  expect_open_error(cert_path, enc, want);
  unlink(enc);
}

Test(tls, mismatched_key_names_tls_key) {
  expect_open_error(cert_path, other_key_path, "--tls-key: does not match --tls-cert"); /* same type */
  expect_open_error(cert_path, ed_key_path, "--tls-key: does not match --tls-cert");    /* other type */
}

Test(tls, error_message_is_one_line_and_bounded) {
  /* a newline in the path must not split the line; a small buffer truncates */
  char odd[160];
  snprintf(odd, sizeof odd, "%s/a\nb.pem", dir);
  tls_ctx_t *ctx = NULL;
  char err[512] = "";
  cr_assert_eq(tls_ctx_open(&ctx, odd, key_path, err, sizeof err), -1);
  cr_assert_null(strchr(err, '\n'), "got: %s", err);
  char tiny[12];
  cr_assert_eq(tls_ctx_open(&ctx, odd, key_path, tiny, sizeof tiny), -1);
  cr_assert_eq(strlen(tiny), sizeof tiny - 1);
  cr_assert_eq(strncmp(tiny, "--tls-cert:", 11), 0);
}

Test(tls, null_frees_are_noops) {
  tls_conn_free(NULL);
  tls_ctx_close(NULL);
}

Test(tls, sniff) {
  cr_assert_eq(tls_sniff_is_handshake(0x16), 1);
  cr_assert_eq(tls_sniff_is_handshake('G'), 0);
  cr_assert_eq(tls_sniff_is_handshake(0x15), 0);
  cr_assert_eq(tls_sniff_is_handshake(0x00), 0);
  cr_assert_eq(tls_sniff_is_handshake(0xff), 0);
}
