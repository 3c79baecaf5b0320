//! Proof of client-side encryption: a canary string the workload wrote into its volume
//! must appear in no object of the bucket (Kopia encrypts before it uploads; a plain
//! copy of the file would carry the string as is).

use super::{fail, pass};
use crate::report::AssertionReport;

/// Whether `needle` occurs in `haystack` (empty needles never match).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Judges the objects read from the store (key, content): names every object that
/// holds the canary. `read` counts the objects actually read, so an empty bucket does
/// not pass silently.
pub fn judge<'a>(
    canary: &str,
    objects: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> AssertionReport {
    let name = "canary absent from every object (client-side encryption)";
    let mut read = 0usize;
    let mut found = Vec::new();
    for (key, body) in objects {
        read += 1;
        if contains(body, canary.as_bytes()) {
            found.push(key.to_string());
        }
    }
    if read == 0 {
        return fail(name, "no object was read from the bucket");
    }
    if found.is_empty() {
        pass(
            name,
            format!("the canary is in none of the {read} object(s) read"),
        )
    } else {
        fail(
            name,
            format!(
                "the canary is in plain text in {} of {read} object(s): {}",
                found.len(),
                found.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn names_the_objects_holding_the_canary() {
        let objs: Vec<(&str, &[u8])> = vec![
            ("kopia/fsb/p0001", b"\x00\x01vdrill-fsb-canary-5e1d7c0a\n"),
            ("kopia/fsb/q0002", b"\x8f\x13random"),
            ("backups/b1/b1.tar.gz", b"vdrill-fsb-canary-5e1d7c0"),
        ];
        let r = judge("vdrill-fsb-canary-5e1d7c0a", objs.iter().copied());
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.message,
            "the canary is in plain text in 1 of 3 object(s): kopia/fsb/p0001"
        );
    }

    #[test]
    fn passes_when_absent_and_fails_on_an_empty_bucket() {
        let objs: Vec<(&str, &[u8])> = vec![("kopia/fsb/p1", b"ciphertext")];
        assert_eq!(judge("canary", objs.iter().copied()).status, Status::Passed);
        assert_eq!(judge("canary", std::iter::empty()).status, Status::Failed);
        assert!(!contains(b"abc", b""));
    }
}
