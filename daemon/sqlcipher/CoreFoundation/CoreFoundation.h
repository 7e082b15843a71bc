/* Included by SQLCipher's crypto_cc.c; it uses CoreFoundation only where
   TARGET_OS_MAC is set (the provider version), which it never is here. */
