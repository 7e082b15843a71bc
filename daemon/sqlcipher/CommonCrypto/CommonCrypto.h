/*
 * The part of Apple's CommonCrypto interface that SQLCipher's crypto_cc.c
 * calls, so that SQLCipher's page encryption runs on the relay's own Rust
 * crypto (daemon/src/store/crypto.rs: ring for HMAC, PBKDF2 and random
 * bytes, RustCrypto's aes for AES-256-CBC) instead of OpenSSL's libcrypto.
 * Declarations follow Apple's headers (same names, types and constants);
 * nothing here is Apple's code. See README.md beside this file.
 */
#ifndef QPC_COMMONCRYPTO_H
#define QPC_COMMONCRYPTO_H

#include <stddef.h>
#include <stdint.h>

typedef int32_t CCCryptorStatus;
enum { kCCSuccess = 0, kCCParamError = -4300, kCCAlignmentError = -4303 };

typedef uint32_t CCOperation;
enum { kCCEncrypt = 0, kCCDecrypt = 1 };

/* AES (any key size; SQLCipher passes kCCKeySizeAES256); options 0 = CBC,
   no padding. */
typedef uint32_t CCAlgorithm;
enum { kCCAlgorithmAES128 = 0 };
typedef uint32_t CCOptions;
enum { kCCKeySizeAES256 = 32, kCCBlockSizeAES128 = 16 };

typedef struct QpcCryptor *CCCryptorRef;
CCCryptorStatus CCCryptorCreate(CCOperation op, CCAlgorithm alg, CCOptions options,
    const void *key, size_t keyLength, const void *iv, CCCryptorRef *cryptorRef);
CCCryptorStatus CCCryptorUpdate(CCCryptorRef cryptorRef, const void *dataIn,
    size_t dataInLength, void *dataOut, size_t dataOutAvailable, size_t *dataOutMoved);
CCCryptorStatus CCCryptorFinal(CCCryptorRef cryptorRef, void *dataOut,
    size_t dataOutAvailable, size_t *dataOutMoved);
CCCryptorStatus CCCryptorRelease(CCCryptorRef cryptorRef);

typedef uint32_t CCHmacAlgorithm;
enum { kCCHmacAlgSHA1 = 0, kCCHmacAlgSHA256 = 2, kCCHmacAlgSHA512 = 4 };
#define CC_SHA1_DIGEST_LENGTH 20
#define CC_SHA256_DIGEST_LENGTH 32
#define CC_SHA512_DIGEST_LENGTH 64

/* Apple's is an opaque buffer; here it holds the Rust HMAC state, which
   CCHmacFinal frees. */
typedef struct { void *state; } CCHmacContext;
void CCHmacInit(CCHmacContext *ctx, CCHmacAlgorithm algorithm, const void *key, size_t keyLength);
void CCHmacUpdate(CCHmacContext *ctx, const void *data, size_t dataLength);
void CCHmacFinal(CCHmacContext *ctx, void *macOut);

typedef uint32_t CCPBKDFAlgorithm;
enum { kCCPBKDF2 = 2 };
typedef uint32_t CCPseudoRandomAlgorithm;
enum { kCCPRFHmacAlgSHA1 = 1, kCCPRFHmacAlgSHA256 = 3, kCCPRFHmacAlgSHA512 = 5 };
int CCKeyDerivationPBKDF(CCPBKDFAlgorithm algorithm, const char *password, size_t passwordLen,
    const uint8_t *salt, size_t saltLen, CCPseudoRandomAlgorithm prf, unsigned rounds,
    uint8_t *derivedKey, size_t derivedKeyLen);

#endif
