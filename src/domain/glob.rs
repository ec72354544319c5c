//! Glob patterns with Redis's `MATCH` semantics (`stringmatchlen` in Redis's `util.c`), so the
//! memory adapter lists exactly the keys Redis would: `*` any run, `?` any one byte,
//! `[abc]`, `[^abc]`, `[a-c]` sets, and `\x` for a literal `x`.

/// Longest pattern accepted, in characters (JSON Schema can state that; it cannot state bytes).
pub const MAX_PATTERN_CHARS: usize = 512;

/// Whether `text` matches `pattern`, byte for byte as Redis matches it.
///
/// Linear in practice and `O(pattern × text)` at worst, never exponential: every token but `*`
/// consumes exactly one byte, so on a mismatch only the most recent `*` needs to take one more
/// byte (the classic wildcard algorithm); earlier stars can never do better.
pub fn matches(pattern: &str, text: &str) -> bool {
    match_bytes(pattern.as_bytes(), text.as_bytes())
}

/// One token of a pattern at the start of `p`: the length it spans in the pattern and whether
/// it matches `byte` (`*` is handled by the caller).
fn token(p: &[u8], byte: u8) -> (usize, bool) {
    match p[0] {
        b'?' => (1, true),
        b'[' => {
            let (matched, rest) = match_set(&p[1..], byte);
            (p.len() - rest.len(), matched)
        }
        b'\\' if p.len() >= 2 => (2, p[1] == byte),
        literal => (1, literal == byte),
    }
}

fn match_bytes(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the text byte it would
    // swallow next.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            if p[pi] == b'*' {
                pi += 1;
                star = Some((pi, si));
                continue;
            }
            let (len, ok) = token(&p[pi..], s[si]);
            if ok {
                pi += len;
                si += 1;
                continue;
            }
        }
        match star {
            Some((after_star, swallowed)) => {
                pi = after_star;
                si = swallowed + 1;
                star = Some((after_star, si));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
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
            ("a*", "a", true),
            ("*?", "", false),
            ("[abc", "a", true),
            ("*[a-c]x", "zzbx", true),
            ("a\\", "a\\", true),
            ("*a*a*b", "aaaab", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn many_stars_against_a_long_key_stay_fast() {
        let key = "a".repeat(256);
        let pattern = "*a".repeat(200) + "*b";
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &key));
        assert!(!matches("*a*a*a*a*b", &key));
        assert!(matches(&("*a".repeat(200) + "*"), &key));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
    }
}
