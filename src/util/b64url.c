/* util/b64url.c — see b64url.h. */
#include "util/b64url.h"

#include <openssl/evp.h>
#include <stdlib.h>

static int b64url_char_ok(char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
}

int b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap, size_t *outn) {
  if (n == 0 || n > B64URL_MAX_IN || n % 4 == 1) return -1;
  size_t padded = (n + 3) / 4 * 4;
  if (padded / 4 * 3 > cap) return -1;
  /* EVP_DecodeBlock reads the standard alphabet with padding: translate first. */
  char *tmp = malloc(padded);
  if (!tmp) abort();
  for (size_t i = 0; i < n; i++) {
    char ch = in[i];
    if (!b64url_char_ok(ch)) {
      free(tmp);
      return -1;
    }
    tmp[i] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
  }
  for (size_t i = n; i < padded; i++) tmp[i] = '=';
  int r = EVP_DecodeBlock(out, (const unsigned char *)tmp, (int)padded);
  free(tmp);
  if (r < 0 || (size_t)r < padded - n) return -1;
  *outn = (size_t)r - (padded - n);
  return 0;
}
