//! The glob matcher against a plain recursive reference (Redis's `stringmatchlen` read
//! literally) on short inputs, where the reference's exponential worst case stays cheap; on
//! long inputs it only has to return.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statekeeper::domain::glob::matches;

/// The reference: `*` tries every split, the rest consume one byte each.
fn reference(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| reference(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && reference(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&byte) = s.first() else { return false };
            let (matched, rest) = set(&p[1..], byte);
            matched && reference(rest, &s[1..])
        }
        Some(b'\\') if p.len() >= 2 => s.first() == Some(&p[1]) && reference(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && reference(&p[1..], &s[1..]),
    }
}

fn set(mut p: &[u8], byte: u8) -> (bool, &[u8]) {
    let negate = p.first() == Some(&b'^');
    if negate {
        p = &p[1..];
    }
    let mut matched = false;
    loop {
        match p {
            [] => return (matched != negate, p),
            [b']', rest @ ..] => return (matched != negate, rest),
            [b'\\', escaped, rest @ ..] => {
                matched |= *escaped == byte;
                p = rest;
            }
            [a, b'-', b, rest @ ..] if *b != b']' => {
                let (low, high) = if a <= b { (*a, *b) } else { (*b, *a) };
                matched |= (low..=high).contains(&byte);
                p = rest;
            }
            [single, rest @ ..] => {
                matched |= *single == byte;
                p = rest;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((pattern, key)) = text.split_once('\u{1}') else { return };
    let got = matches(pattern, key);
    if pattern.len() <= 12 && key.len() <= 24 {
        assert_eq!(
            got,
            reference(pattern.as_bytes(), key.as_bytes()),
            "{pattern:?} vs {key:?}"
        );
    }
});
