/* Random bytes for SQLCipher's salts and IVs (see CommonCrypto/CommonCrypto.h). */
#ifndef QPC_SECRANDOM_H
#define QPC_SECRANDOM_H
#include <stddef.h>
typedef const struct QpcRandom *SecRandomRef;
#define kSecRandomDefault ((SecRandomRef)0)
/* 0 (kCCSuccess) when count bytes were written. */
int SecRandomCopyBytes(SecRandomRef rnd, size_t count, void *bytes);
#endif
