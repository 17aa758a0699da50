//! What a tag object binds: its own name and a commit. A signature counts
//! only for what it signed.

use super::Verdict;

/// The line that opens an armored OpenPGP signature inside a git object.
pub(super) const PGP_SIGNATURE_BEGIN: &[u8] = b"-----BEGIN PGP SIGNATURE-----";

/// The header fields of a tag object that bind it (`type`, `tag`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TagHeader {
    pub(super) object_type: Option<String>,
    pub(super) tag: Option<String>,
}

pub(super) fn tag_header(raw: &[u8]) -> TagHeader {
    let mut header = TagHeader::default();
    // The header ends at the first empty line; each field is `key value`.
    for line in raw.split(|b| *b == b'\n') {
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        if let Some((key, value)) = line.split_once(' ') {
            let slot = match key {
                "type" => &mut header.object_type,
                "tag" => &mut header.tag,
                _ => continue,
            };
            // A second `type` or `tag` line makes the object ambiguous:
            // keep the first, and let the mismatch show below if they differ.
            slot.get_or_insert_with(|| value.to_string());
        }
    }
    header
}

/// Why a tag object may not stand for `ref_name`, if it may not.
pub(super) fn tag_binding(ref_name: &str, raw: &[u8]) -> Option<Verdict> {
    let header = tag_header(raw);
    let object_type = header.object_type.unwrap_or_else(|| "nothing".into());
    if object_type != "commit" {
        return Some(Verdict::NotACommit { object_type });
    }
    let short = ref_name.strip_prefix("refs/tags/").unwrap_or(ref_name);
    match header.tag {
        Some(tag) if tag == short => None,
        tag => Some(Verdict::TagNameMismatch {
            tag_name: tag.unwrap_or_default(),
            ref_name: ref_name.to_string(),
        }),
    }
}

/// Splits a raw tag object into the signed payload and the armored signature,
/// the way git does (`parse_signed_buffer`): the signature starts at the
/// *last* line that opens a PGP signature block; everything before it is
/// what was signed. A message that quotes a signature block is then part of
/// the payload, as git, GnuPG run by hand and an auditor's tools read it:
/// hab never accepts a split they would not.
pub fn split_signed_tag(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut offset = 0;
    let mut last = None;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(PGP_SIGNATURE_BEGIN) {
            last = Some(offset);
        }
        offset += line.len();
    }
    last.map(|at| (&raw[..at], &raw[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_finds_signature_block() {
        let raw = b"object abc\ntype commit\ntag v1\ntagger x\n\nmsg\n-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n";
        let (payload, sig) = split_signed_tag(raw).unwrap();
        assert!(payload.ends_with(b"msg\n"));
        assert!(sig.starts_with(PGP_SIGNATURE_BEGIN));
        assert!(split_signed_tag(b"object abc\n\nmsg\n").is_none());
        // A message quoting a signature block: the last block is the
        // signature, the quote is signed payload (git's split).
        let quoted = b"object abc\ntype commit\ntag v1\n\n-----BEGIN PGP SIGNATURE-----\nq\n-----END PGP SIGNATURE-----\n-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n";
        let (payload, sig) = split_signed_tag(quoted).unwrap();
        assert!(payload.ends_with(b"q\n-----END PGP SIGNATURE-----\n"));
        assert_eq!(
            sig,
            b"-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n"
        );
    }

    #[test]
    fn a_tag_object_binds_only_its_own_name_and_a_commit() {
        let raw = |typ: &str, tag: &str| {
            format!("object abc\ntype {typ}\ntag {tag}\ntagger x 1 +0000\n\nmsg\ntag v9\n")
        };
        assert_eq!(
            tag_binding("refs/tags/v1", raw("commit", "v1").as_bytes()),
            None
        );
        assert_eq!(
            tag_binding("refs/tags/v9", raw("commit", "v1").as_bytes()),
            Some(Verdict::TagNameMismatch {
                tag_name: "v1".into(),
                ref_name: "refs/tags/v9".into()
            })
        );
        for typ in ["tree", "blob", "tag"] {
            assert_eq!(
                tag_binding("refs/tags/v1", raw(typ, "v1").as_bytes()),
                Some(Verdict::NotACommit {
                    object_type: typ.into()
                })
            );
        }
        // Nested directories are part of the name; a message line is not a header.
        assert_eq!(
            tag_binding("refs/tags/rc/v1", raw("commit", "rc/v1").as_bytes()),
            None
        );
        let doubled = "object abc\ntype commit\ntag v1\ntag v9\n\nmsg\n";
        assert!(tag_binding("refs/tags/v9", doubled.as_bytes()).is_some());
        let unnamed = "object abc\ntype commit\n\nmsg\n";
        assert!(matches!(
            tag_binding("refs/tags/v1", unnamed.as_bytes()),
            Some(Verdict::TagNameMismatch { .. })
        ));
    }
}
