//! The crypto under SQLCipher's page encryption, in Rust: SQLCipher's
//! CommonCrypto back-end (crypto_cc.c, selected with -DSQLCIPHER_CRYPTO_CC
//! in .cargo/config.toml and cross/sqlite-flags) is compiled against the
//! small CommonCrypto-shaped header in daemon/sqlcipher/ and calls these
//! functions. HMAC, PBKDF2 and random bytes come from ring, which rustls
//! links anyway; AES-256-CBC from RustCrypto's aes. No OpenSSL: the
//! trimmed libcrypto was a quarter of the router binary (cross/SIZES.md).
//!
//! The on-disk format is SQLCipher 4's, unchanged: AES-256-CBC pages,
//! HMAC-SHA512 per page, PBKDF2-HMAC-SHA512 (256,000 iterations) for a
//! passphrase, 2 iterations for the HMAC key; daemon/tests/sqlcipher.rs
//! opens stores written by the OpenSSL build.
//!
//! Every function is called by SQLCipher's C code only, with the pointers
//! and lengths it owns; a null pointer or an unknown algorithm is an error
//! that SQLCipher reports as a failed page (the store then refuses the key),
//! never undefined behaviour here.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::num::NonZeroU32;
use std::slice;

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use ring::{hmac, pbkdf2, rand::SecureRandom};

const SUCCESS: i32 = 0; // kCCSuccess
const PARAM_ERROR: i32 = -4300; // kCCParamError
const ALIGNMENT_ERROR: i32 = -4303; // kCCAlignmentError
const ENCRYPT: u32 = 0; // kCCEncrypt
const DECRYPT: u32 = 1; // kCCDecrypt
const BLOCK: usize = 16;

/// `CCHmacContext`: one pointer to the state that Init boxes and Final frees.
#[repr(C)]
pub struct HmacContext {
    state: *mut hmac::Context,
}

/// An AES-256-CBC run over one page: the key schedule and the chaining block.
pub struct Cryptor {
    op: u32,
    aes: Aes256,
    chain: [u8; BLOCK],
}

/// Bytes SQLCipher passed, or none for a null pointer (only with length 0).
unsafe fn bytes<'a>(p: *const c_void, len: usize) -> Option<&'a [u8]> {
    match (p.is_null(), len) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        (false, _) => Some(slice::from_raw_parts(p.cast(), len)),
    }
}

fn hmac_algorithm(alg: u32) -> Option<hmac::Algorithm> {
    // kCCHmacAlgSHA1, kCCHmacAlgSHA256, kCCHmacAlgSHA512
    Some(match alg {
        0 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        2 => hmac::HMAC_SHA256,
        4 => hmac::HMAC_SHA512,
        _ => return None,
    })
}

#[no_mangle]
pub unsafe extern "C" fn CCHmacInit(ctx: *mut HmacContext, alg: u32, key: *const c_void, key_len: usize) {
    if ctx.is_null() {
        return;
    }
    (*ctx).state = match (hmac_algorithm(alg), bytes(key, key_len)) {
        (Some(alg), Some(key)) => Box::into_raw(Box::new(hmac::Context::with_key(&hmac::Key::new(alg, key)))),
        _ => std::ptr::null_mut(),
    };
}

#[no_mangle]
pub unsafe extern "C" fn CCHmacUpdate(ctx: *mut HmacContext, data: *const c_void, len: usize) {
    if ctx.is_null() || (*ctx).state.is_null() {
        return;
    }
    match bytes(data, len) {
        Some(data) => (*(*ctx).state).update(data),
        // A page that cannot be read must not get a valid tag.
        None => drop(Box::from_raw(std::mem::replace(&mut (*ctx).state, std::ptr::null_mut()))),
    }
}

/// Writes the tag (20, 32 or 64 bytes, as CommonCrypto's). A context that
/// failed leaves `out` untouched: SQLCipher filled it before and the page's
/// tag check then fails, as with OpenSSL's error path.
#[no_mangle]
pub unsafe extern "C" fn CCHmacFinal(ctx: *mut HmacContext, out: *mut c_void) {
    if ctx.is_null() || (*ctx).state.is_null() {
        return;
    }
    let state = Box::from_raw(std::mem::replace(&mut (*ctx).state, std::ptr::null_mut()));
    let tag = state.sign();
    if !out.is_null() {
        std::ptr::copy_nonoverlapping(tag.as_ref().as_ptr(), out.cast::<u8>(), tag.as_ref().len());
    }
}

#[no_mangle]
pub unsafe extern "C" fn CCKeyDerivationPBKDF(
    alg: u32,
    password: *const c_char,
    password_len: usize,
    salt: *const u8,
    salt_len: usize,
    prf: u32,
    rounds: c_uint,
    out: *mut u8,
    out_len: usize,
) -> c_int {
    // kCCPBKDF2; kCCPRFHmacAlgSHA1, kCCPRFHmacAlgSHA256, kCCPRFHmacAlgSHA512
    let prf = match prf {
        1 => pbkdf2::PBKDF2_HMAC_SHA1,
        3 => pbkdf2::PBKDF2_HMAC_SHA256,
        5 => pbkdf2::PBKDF2_HMAC_SHA512,
        _ => return PARAM_ERROR,
    };
    let (Some(password), Some(salt), Some(rounds)) =
        (bytes(password.cast(), password_len), bytes(salt.cast(), salt_len), NonZeroU32::new(rounds))
    else {
        return PARAM_ERROR;
    };
    if alg != 2 || out.is_null() || out_len == 0 {
        return PARAM_ERROR;
    }
    pbkdf2::derive(prf, rounds, salt, password, slice::from_raw_parts_mut(out, out_len));
    SUCCESS
}

/// AES-256 in CBC mode without padding (SQLCipher encrypts whole pages).
#[no_mangle]
pub unsafe extern "C" fn CCCryptorCreate(
    op: u32,
    alg: u32,
    options: u32,
    key: *const c_void,
    key_len: usize,
    iv: *const c_void,
    out: *mut *mut Cryptor,
) -> c_int {
    if out.is_null() || alg != 0 || options != 0 || !(op == ENCRYPT || op == DECRYPT) {
        return PARAM_ERROR;
    }
    let (Some(key), Some(iv)) = (bytes(key, key_len), bytes(iv, BLOCK)) else {
        return PARAM_ERROR;
    };
    let Ok(aes) = Aes256::new_from_slice(key) else {
        return PARAM_ERROR;
    };
    let mut chain = [0u8; BLOCK];
    chain.copy_from_slice(iv);
    *out = Box::into_raw(Box::new(Cryptor { op, aes, chain }));
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn CCCryptorUpdate(
    cryptor: *mut Cryptor,
    input: *const c_void,
    in_len: usize,
    output: *mut c_void,
    out_available: usize,
    moved: *mut usize,
) -> c_int {
    if cryptor.is_null() || moved.is_null() || output.is_null() || out_available < in_len {
        return PARAM_ERROR;
    }
    if !in_len.is_multiple_of(BLOCK) {
        return ALIGNMENT_ERROR;
    }
    let Some(input) = bytes(input, in_len) else {
        return PARAM_ERROR;
    };
    let c = &mut *cryptor;
    let output = slice::from_raw_parts_mut(output.cast::<u8>(), in_len);
    let word = |b: &[u8]| u128::from_ne_bytes(b.try_into().expect("a whole block"));
    if c.op == ENCRYPT {
        // Each block needs the one before: one at a time.
        for (i, o) in input.chunks_exact(BLOCK).zip(output.chunks_exact_mut(BLOCK)) {
            let mut block = GenericArray::from((word(i) ^ u128::from_ne_bytes(c.chain)).to_ne_bytes());
            c.aes.encrypt_block(&mut block);
            c.chain = block.into();
            o.copy_from_slice(&block);
        }
    } else {
        // Decryption has no chain: every block at once (the bitsliced
        // code does two or four in the time of one), then each XORed
        // with the ciphertext block before it.
        output.copy_from_slice(input);
        let (blocks, _) = output.as_chunks_mut::<BLOCK>();
        // SAFETY: `aes::Block` is a `#[repr(transparent)]` GenericArray of
        // 16 bytes (alignment 1): the same memory as `[u8; 16]`.
        let blocks: &mut [aes::Block] = slice::from_raw_parts_mut(blocks.as_mut_ptr().cast(), blocks.len());
        c.aes.decrypt_blocks(blocks);
        let mut prev = c.chain;
        for (i, o) in input.chunks_exact(BLOCK).zip(output.chunks_exact_mut(BLOCK)) {
            o.copy_from_slice(&(word(o) ^ u128::from_ne_bytes(prev)).to_ne_bytes());
            prev = i.try_into().expect("a whole block");
        }
        c.chain = prev;
    }
    *moved = in_len;
    SUCCESS
}

/// Nothing is buffered (no padding): writes no bytes.
#[no_mangle]
pub unsafe extern "C" fn CCCryptorFinal(
    cryptor: *mut Cryptor,
    _out: *mut c_void,
    _avail: usize,
    moved: *mut usize,
) -> c_int {
    if cryptor.is_null() || moved.is_null() {
        return PARAM_ERROR;
    }
    *moved = 0;
    SUCCESS
}

/// Frees the cryptor; the aes key schedule is zeroed on drop.
#[no_mangle]
pub unsafe extern "C" fn CCCryptorRelease(cryptor: *mut Cryptor) -> c_int {
    if !cryptor.is_null() {
        let mut c = Box::from_raw(cryptor);
        c.chain = [0; BLOCK];
    }
    SUCCESS
}

/// Salts and IVs; 0 (kCCSuccess) when `count` bytes were written.
#[no_mangle]
pub unsafe extern "C" fn SecRandomCopyBytes(_rnd: *const c_void, count: usize, out: *mut c_void) -> c_int {
    if count == 0 {
        return SUCCESS;
    }
    if out.is_null() {
        return PARAM_ERROR;
    }
    match ring::rand::SystemRandom::new().fill(slice::from_raw_parts_mut(out.cast::<u8>(), count)) {
        Ok(()) => SUCCESS,
        Err(_) => PARAM_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST SP 800-38A F.2.5/F.2.6 (CBC-AES256), first two blocks, through
    /// the functions as SQLCipher calls them.
    #[test]
    fn aes_256_cbc_matches_the_nist_vectors_both_ways() {
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4").unwrap();
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        // NIST SP 800-38A F.2.5/F.2.6, all four blocks.
        let plain = hex::decode(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        )
        .unwrap();
        let cipher = hex::decode(
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d\
             39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
        )
        .unwrap();
        let run = |op: u32, input: &[u8]| unsafe {
            let mut c = std::ptr::null_mut();
            assert_eq!(
                CCCryptorCreate(op, 0, 0, key.as_ptr().cast(), 32, iv.as_ptr().cast(), &mut c),
                SUCCESS
            );
            let mut out = vec![0u8; input.len()];
            let mut moved = 0;
            let rc = CCCryptorUpdate(
                c,
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut moved,
            );
            assert_eq!((rc, moved), (SUCCESS, input.len()));
            assert_eq!(CCCryptorFinal(c, std::ptr::null_mut(), 0, &mut moved), SUCCESS);
            assert_eq!(moved, 0);
            assert_eq!(CCCryptorRelease(c), SUCCESS);
            out
        };
        // Every prefix: decryption takes its blocks two or four at a
        // time, so odd counts and a lone block too.
        for blocks in 1..=4 {
            let n = blocks * BLOCK;
            assert_eq!(run(ENCRYPT, &plain[..n]), cipher[..n], "{blocks} blocks encrypted");
            assert_eq!(run(DECRYPT, &cipher[..n]), plain[..n], "{blocks} blocks decrypted");
        }
    }

    #[test]
    fn a_partial_block_and_a_short_key_are_refused() {
        let key = [7u8; 16];
        let iv = [0u8; BLOCK];
        unsafe {
            let mut c = std::ptr::null_mut();
            assert_eq!(
                CCCryptorCreate(ENCRYPT, 0, 0, key.as_ptr().cast(), 16, iv.as_ptr().cast(), &mut c),
                PARAM_ERROR
            );
            assert_eq!(
                CCCryptorCreate(ENCRYPT, 0, 0, [7u8; 32].as_ptr().cast(), 32, iv.as_ptr().cast(), &mut c),
                SUCCESS
            );
            let (input, mut out, mut moved) = ([0u8; 20], [0u8; 20], 0);
            let rc = CCCryptorUpdate(c, input.as_ptr().cast(), 20, out.as_mut_ptr().cast(), 20, &mut moved);
            assert_eq!(rc, ALIGNMENT_ERROR);
            CCCryptorRelease(c);
        }
    }

    /// RFC 4231 test case 2 (HMAC-SHA-512, key "Jefe"), the message in two
    /// parts as SQLCipher feeds a page and its number.
    #[test]
    fn hmac_sha512_in_two_updates_matches_rfc_4231() {
        let mut ctx = HmacContext { state: std::ptr::null_mut() };
        let mut tag = [0u8; 64];
        unsafe {
            CCHmacInit(&mut ctx, 4, b"Jefe".as_ptr().cast(), 4);
            CCHmacUpdate(&mut ctx, b"what do ya want ".as_ptr().cast(), 16);
            CCHmacUpdate(&mut ctx, b"for nothing?".as_ptr().cast(), 12);
            CCHmacFinal(&mut ctx, tag.as_mut_ptr().cast());
        }
        assert!(ctx.state.is_null());
        assert_eq!(
            hex::encode(tag),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    /// RFC 6070's PBKDF2-HMAC-SHA1 vector (2 iterations, as SQLCipher's HMAC
    /// key derivation uses), and an unknown PRF refused.
    #[test]
    fn pbkdf2_matches_rfc_6070_and_refuses_an_unknown_prf() {
        let mut key = [0u8; 20];
        let rc = unsafe {
            CCKeyDerivationPBKDF(
                2,
                b"password".as_ptr().cast(),
                8,
                b"salt".as_ptr(),
                4,
                1,
                2,
                key.as_mut_ptr(),
                20,
            )
        };
        assert_eq!(rc, SUCCESS);
        assert_eq!(hex::encode(key), "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
        let rc = unsafe {
            CCKeyDerivationPBKDF(
                2,
                b"password".as_ptr().cast(),
                8,
                b"salt".as_ptr(),
                4,
                9,
                2,
                key.as_mut_ptr(),
                20,
            )
        };
        assert_eq!(rc, PARAM_ERROR);
    }
}
