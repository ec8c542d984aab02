/* net/tls.h — TLS for connections on the shared port (SPEC §10 --tls-cert/--tls-key).
 *
 * OpenSSL 3 with memory BIOs, server side only: the conn layer feeds ciphertext
 * read from the socket and sends whatever ciphertext comes out; libuv keeps
 * owning the socket.  OpenSSL's record buffers and our memory BIOs are released
 * whenever a connection is idle (10,000 idle connections must stay cheap).
 * Loop thread only (OpenSSL's error queue is per thread).  A tls_conn_t is owned
 * by its conn and freed with it; it keeps its SSL_CTX alive by reference.
 */
#ifndef AGD_NET_TLS_H
#define AGD_NET_TLS_H

#include <stddef.h>

#include "util/buf.h"

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

/* Load a PEM certificate chain and a PEM private key (not encrypted); TLS 1.2+,
 * ALPN "http/1.1" when the client offers it, server session cache, no
 * renegotiation.  0 and *out, or -1 with a one-line reason in err naming the
 * option: "--tls-cert: cannot load 'x': <reason>", "--tls-key: cannot load 'y':
 * <reason>", "--tls-key: does not match --tls-cert". */
int tls_ctx_open(tls_ctx_t **out, const char *cert_path, const char *key_path, char *err, size_t err_cap);
/* NULL is a no-op.  Connections still open keep the OpenSSL context alive. */
void tls_ctx_close(tls_ctx_t *ctx);

/* A server-side TLS session waiting for the ClientHello.  Never NULL (OOM aborts). */
tls_conn_t *tls_conn_new(tls_ctx_t *ctx);
/* NULL is a no-op.  OpenSSL forgets the cached session of a connection freed
 * without tls_conn_shutdown() (it cannot be resumed). */
void tls_conn_free(tls_conn_t *t);

/* Feed n bytes of ciphertext from the socket (borrowed for the call).  Drives the
 * handshake, then appends decrypted application bytes to `plain`; bytes that must
 * go to the peer (handshake, session tickets, alerts) are appended to `out`.
 * Returns 0 (also when more bytes are needed, and when the peer sent close_notify:
 * see tls_conn_peer_closed()), AGD_EBAD_REQUEST when the peer broke the protocol
 * (the caller sends `out` if any, then closes; later calls fail the same way), or
 * AGD_ETOO_LARGE when `plain` reached its limit (decryption stops, the caller
 * closes) or `out` did. */
int tls_conn_read(tls_conn_t *t, const char *in, size_t n, buf_t *plain, buf_t *out);
/* Encrypt n bytes of application data, appending the records to `out`.
 * Returns 0; AGD_EINTERNAL when the handshake has not finished (nothing is
 * written or buffered: the server only answers requests it decrypted) or the
 * session failed; AGD_ETOO_LARGE when `out` is at its limit. */
int tls_conn_write(tls_conn_t *t, const char *p, size_t n, buf_t *out);
/* close_notify into out (nothing before the handshake finished or after a failure). */
void tls_conn_shutdown(tls_conn_t *t, buf_t *out);
/* 1 once the handshake completed. */
int tls_conn_established(const tls_conn_t *t);
/* 1 once the peer sent close_notify (tls_conn_read() returned 0 with it): no more
 * application data will come; the caller finishes writing and closes. */
int tls_conn_peer_closed(const tls_conn_t *t);

/* 1 when the first byte of a connection starts a TLS handshake record (0x16). */
static inline int tls_sniff_is_handshake(unsigned char first_byte) { return first_byte == 0x16; }

#endif
