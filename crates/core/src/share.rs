//! Matching shared files against search queries, without touching a disk: the rules every
//! servent system uses (Napster's index, Gnutella's QueryHits, the shared-file index in
//! `servent-runtime`), so that one query finds the same files everywhere.
//!
//! A query is split on whitespace into terms and lower-cased. A file matches when every term
//! matches its lower-cased name (or relative path): the pieces of a term between `*`
//! wildcards must all occur in it, in order. An empty query, or one made only of `*`, lists
//! nothing (it would list everything).

/// Lower-cased terms of `query`; `None` when it would match everything.
pub fn query_terms(query: &str) -> Option<Vec<String>> {
    let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    if terms.iter().all(|t| t.chars().all(|c| c == '*')) {
        None
    } else {
        Some(terms)
    }
}

/// Whether the `*`-separated pieces of `term` occur in `text` in order (both lower-case).
pub fn term_matches(term: &str, text: &str) -> bool {
    let mut rest = text;
    for piece in term.split('*').filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Whether every term matches `text_lower` (a lower-cased name or path).
pub fn matches_all(terms: &[String], text_lower: &str) -> bool {
    terms.iter().all(|t| term_matches(t, text_lower))
}

/// Lower-case words of `s` (split on anything not a letter or digit): what a QRP table or
/// an inverted index stores.
pub fn keywords(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn terms_and_wildcards() {
        let name = "pixies - debaser.mp3";
        for (q, want) in [
            ("DEBASER", true),
            ("pixies debaser", true),
            ("deb*", true),
            ("*.mp3", true),
            ("pix*ser", true),
            ("ser*pix", false),
            ("pixies wave", false),
        ] {
            let terms = query_terms(q).unwrap();
            assert_eq!(matches_all(&terms, name), want, "{q}");
        }
        assert_eq!(query_terms(""), None);
        assert_eq!(query_terms(" * ** "), None);
        assert_eq!(
            keywords("Pixies - Debaser.mp3"),
            vec!["pixies", "debaser", "mp3"]
        );
    }

    proptest! {
        #[test]
        fn a_name_matches_itself_and_star(name in "[a-z .]{1,30}") {
            prop_assert!(term_matches(&name, &name));
            prop_assert!(term_matches("*", &name));
        }
    }
}
