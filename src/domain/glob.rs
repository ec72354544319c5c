//! Glob patterns with Redis's `MATCH` semantics (`stringmatchlen` in Redis's `util.c`), so the
//! memory adapter lists exactly the keys Redis would: `*` any run, `?` any one byte,
//! `[abc]`, `[^abc]`, `[a-c]` sets, and `\x` for a literal `x`.

/// Longest pattern accepted, in characters (JSON Schema can state that; it cannot state bytes).
pub const MAX_PATTERN_CHARS: usize = 512;

/// Whether `text` matches `pattern`, byte for byte as Redis matches it.
pub fn matches(pattern: &str, text: &str) -> bool {
    match_bytes(pattern.as_bytes(), text.as_bytes())
}

fn match_bytes(mut p: &[u8], mut s: &[u8]) -> bool {
    while let Some(&c) = p.first() {
        match c {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                return (0..=s.len()).any(|i| match_bytes(&p[1..], &s[i..]));
            }
            b'?' => {
                if s.is_empty() {
                    return false;
                }
                s = &s[1..];
            }
            b'[' => {
                let Some(&byte) = s.first() else {
                    return false;
                };
                let (matched, rest) = match_set(&p[1..], byte);
                if !matched {
                    return false;
                }
                s = &s[1..];
                p = rest;
                continue;
            }
            b'\\' if p.len() >= 2 => {
                if s.first() != Some(&p[1]) {
                    return false;
                }
                s = &s[1..];
                p = &p[1..];
            }
            literal => {
                if s.first() != Some(&literal) {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
    }
    s.is_empty()
}

/// Matches one byte against a set whose `[` is already consumed; returns the result and the
/// pattern after the closing `]` (or the end, when the set is never closed, as in Redis).
fn match_set(mut p: &[u8], byte: u8) -> (bool, &[u8]) {
    let negate = p.first() == Some(&b'^');
    if negate {
        p = &p[1..];
    }
    let mut matched = false;
    loop {
        match p {
            [] => break,
            [b']', rest @ ..] => {
                p = rest;
                return (matched != negate, p);
            }
            [b'\\', escaped, rest @ ..] => {
                matched |= *escaped == byte;
                p = rest;
            }
            [start, b'-', end, rest @ ..] if *end != b']' => {
                let (low, high) = if start <= end {
                    (*start, *end)
                } else {
                    (*end, *start)
                };
                matched |= (low..=high).contains(&byte);
                p = rest;
            }
            [single, rest @ ..] => {
                matched |= *single == byte;
                p = rest;
            }
        }
    }
    (matched != negate, p)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_semantics() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("user:*", "user:42", true),
            ("user:*", "users:42", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("a\\?", "a?", true),
            ("[\\]]", "]", true),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("**", "x", true),
            ("k[0-9]", "k7", true),
            ("k[0-9]", "k", false),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} vs {text:?}");
        }
    }
}
