#![no_main]
//! Page tokens (`itsm_runtime::paging::PageTokens`).
//!
//! 1. The input, as text, is a token a client sent: `decode`, `decode_number` and `decode_text`
//!    must refuse it with `InvalidArgument` (nobody can forge the HMAC), except the empty token,
//!    which is the first page.
//! 2. The input, as bytes, becomes a sort key: the token `next` makes for it decodes to the same
//!    key; and the same token with one byte changed (in its bytes or in its text), cut short,
//!    asked for by another query, or checked with another key is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use itsm_runtime::Error;
use itsm_runtime::paging::PageTokens;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET: &str = "fuzz-paging-secret-of-some-length";
/// The key arbitrary tokens are checked with. Nothing is ever signed with it, so a token that
/// passes is a forgery, even if the fuzzer copied into its input a token that part 2 made.
const UNUSED_SECRET: &str = "fuzz-paging-key-that-signs-nothing";
/// `decode` refuses longer tokens outright.
const MAX_TOKEN_LEN: usize = 4096;
const URL_SAFE_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn refused<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// A sort key from bytes: pieces split at 0xFF; a piece starting with an even byte is a string
/// (lossy UTF-8), with an odd byte a number, 0xFE null, 0xFD a bool. No floats: JSON does not
/// promise to give back the exact same float.
fn sort_key(data: &[u8]) -> Vec<Value> {
    data.split(|b| *b == 0xFF)
        .take(16)
        .map(|piece| {
            let Some((&tag, rest)) = piece.split_first() else { return Value::String(String::new()) };
            match tag {
                0xFE => Value::Null,
                0xFD => Value::Bool(rest.len() % 2 == 0),
                odd if odd % 2 == 1 => {
                    let mut bytes = [0u8; 8];
                    for (slot, byte) in bytes.iter_mut().zip(rest) {
                        *slot = *byte;
                    }
                    Value::from(i64::from_le_bytes(bytes))
                }
                _ => Value::String(String::from_utf8_lossy(rest).into_owned()),
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let fingerprint = PageTokens::fingerprint(&["tenant-a", "parent", "filter", "order_by"]);

    // 1. Arbitrary tokens.
    if let Ok(token) = std::str::from_utf8(data) {
        let checker = PageTokens::new(UNUSED_SECRET);
        if token.is_empty() {
            assert!(matches!(checker.decode(token, &fingerprint), Ok(None)));
            assert!(matches!(checker.decode_number(token, &fingerprint), Ok(0)));
            assert!(matches!(checker.decode_text(token, &fingerprint), Ok(None)));
        } else {
            refused(checker.decode(token, &fingerprint), "an arbitrary token");
            refused(checker.decode_number(token, &fingerprint), "an arbitrary number token");
            refused(checker.decode_text(token, &fingerprint), "an arbitrary text token");
        }
    }

    // 2. Tokens this service made.
    let tokens = PageTokens::new(SECRET);
    let key = sort_key(data);
    let token = tokens.next(&fingerprint, Some(key.clone())).expect("encoding a page token");
    assert!(!token.is_empty());
    assert_eq!(tokens.next(&fingerprint, None).expect("no next page"), "");
    if token.len() > MAX_TOKEN_LEN {
        refused(tokens.decode(&token, &fingerprint), "a token over the length limit");
        return;
    }
    match tokens.decode(&token, &fingerprint) {
        Ok(Some(decoded)) => assert_eq!(decoded, key, "the token does not give back its key"),
        other => panic!("a token made here is refused: {other:?}"),
    }

    // Another query, another tenant, another deployment's key.
    let other_query = PageTokens::fingerprint(&["tenant-b", "parent", "filter", "order_by"]);
    refused(tokens.decode(&token, &other_query), "a token of another query");
    refused(PageTokens::new("another-secret").decode(&token, &fingerprint), "a token signed with another key");

    // One byte of the signed bytes changed: the MAC (first 32 bytes) or the body.
    let raw = URL_SAFE_NO_PAD.decode(&token).expect("a token made here is base64url");
    let position = data.first().map_or(0, |b| usize::from(*b)) * 7 % raw.len();
    let mask = data.get(1).copied().filter(|b| *b != 0).unwrap_or(0x01);
    let mut tampered = raw.clone();
    tampered[position] ^= mask;
    refused(tokens.decode(&URL_SAFE_NO_PAD.encode(&tampered), &fingerprint), "a token with a byte changed");

    // One character of the text changed, to another base64url character or to anything else.
    let mut text = token.clone().into_bytes();
    let at = data.get(2).map_or(0, |b| usize::from(*b)) * 13 % text.len();
    let replacement = data.get(3).copied().unwrap_or(b'A');
    let replacement = if replacement.is_ascii() && replacement != text[at] {
        replacement
    } else {
        let current = URL_SAFE_ALPHABET.iter().position(|c| *c == text[at]).unwrap_or(0);
        URL_SAFE_ALPHABET[(current + 1) % URL_SAFE_ALPHABET.len()]
    };
    text[at] = replacement;
    let text = String::from_utf8(text).expect("ASCII");
    refused(tokens.decode(&text, &fingerprint), "a token with a character changed");

    // Cut short (an empty token is the first page, not an error).
    let cut = data.get(4).map_or(1, |b| usize::from(*b)) % token.len();
    if cut > 0 {
        refused(tokens.decode(&token[..cut], &fingerprint), "a token cut short");
    }
});
