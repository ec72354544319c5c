//! The record format statekeeper's state leaves one backend and enters another in: NDJSON.
//!
//! ```text
//! {"format":"statekeeper-backup","version":1,"created_at":"2026-11-26T09:00:00Z"}
//! {"capability":"cache","tenant":"default","id":"users/42","value":{"name":"Ada"},"ttl_ms":59000}
//! {"capability":"sessions","tenant":"default","id":"0e6c…","value":{…},"ttl_ms":3599000,"version":1}
//! {"count":2,"sha256":"…"}
//! ```
//!
//! - The header names the format and its version, and when the backup was taken.
//! - One line per item: its capability, tenant and id, `value` in the capability's API shape,
//!   `ttl_ms` the lifetime it had left when the backup was taken (`null`: none), and `version`
//!   where the item has one.
//! - The trailer counts the items and holds the SHA-256 (hex) of every byte before it (header
//!   and item lines, newlines included). A file whose trailer is missing, miscounts or does not
//!   match is refused as a whole, before anything is written.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub const FORMAT: &str = "statekeeper-backup";
pub const VERSION: u32 = 1;

/// A whole backup of one cache value, as the API documents it (the checksum is this text's).
pub const EXAMPLE: &str = concat!(
    r#"{"format":"statekeeper-backup","version":1,"created_at":"2026-11-26T09:00:00Z"}"#,
    "\n",
    r#"{"capability":"cache","tenant":"default","id":"users/42","value":{"name":"Ada"},"ttl_ms":60000}"#,
    "\n",
    r#"{"count":1,"sha256":"28057bc3e698ef9642e996e592435e448da57a6dbbf977b50b19fb94b5fca7f7"}"#,
    "\n"
);

/// One line of a backup file: the header first, then the records, then the trailer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum BackupLine {
    Header(Header),
    Record(Record),
    Trailer(Trailer),
}

/// The first line: the format, its version, and when the backup was taken.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BackupHeader)]
pub struct Header {
    #[schema(pattern = "^statekeeper-backup$")]
    pub format: String,
    #[schema(minimum = 1, maximum = 1)]
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// One item. `value` is kept as the JSON text it was written as, so numbers of any size and
/// the text of cache values survive unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BackupRecord)]
pub struct Record {
    /// The capability the item belongs to.
    #[schema(
        pattern = "^(cache|sessions|agent_states|pending_actions|locks|queues|usage|budgets)$"
    )]
    pub capability: String,
    /// The tenant it belongs to: a restore takes only its key's tenant's items.
    pub tenant: String,
    /// The item's id within the capability (`namespace/key`, a session id, `queue/job_id`...).
    pub id: String,
    /// The item in the capability's API shape.
    #[schema(value_type = serde_json::Value)]
    pub value: Box<RawValue>,
    /// The lifetime it had left when the backup was taken; `null`: none.
    pub ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// The last line: how many records, and the SHA-256 (hex) of every byte before it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BackupTrailer)]
pub struct Trailer {
    pub count: u64,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
}

/// Why a file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("line 1 is not a statekeeper backup header ({0})")]
    NoHeader(String),
    #[error(
        "format {format:?} version {version} is not one this statekeeper reads ({FORMAT:?} version {VERSION})"
    )]
    Unsupported { format: String, version: u32 },
    #[error("line {line}: not a record: {detail}")]
    BadRecord { line: usize, detail: String },
    #[error("the file ends without its trailer line: it is truncated")]
    Truncated,
    #[error(
        "the trailer counts {said} items but the file holds {found}: it is truncated or was edited"
    )]
    Miscount { said: u64, found: u64 },
    #[error("the checksum does not match: the file was changed after it was written")]
    Checksum,
    #[error("line {line}: text after the trailer")]
    AfterTrailer { line: usize },
}

/// Writes a backup line by line, hashing as it goes.
pub struct Encoder {
    hasher: Sha256,
    count: u64,
}

impl Encoder {
    /// The encoder and the header line.
    pub fn start(created_at: OffsetDateTime) -> (Self, Vec<u8>) {
        let header = Header {
            format: FORMAT.to_string(),
            version: VERSION,
            created_at,
        };
        let mut encoder = Self {
            hasher: Sha256::new(),
            count: 0,
        };
        let line = encoder.hashed(&header);
        (encoder, line)
    }

    pub fn record(&mut self, record: &Record) -> Vec<u8> {
        self.count += 1;
        self.hashed(record)
    }

    pub fn finish(self) -> Vec<u8> {
        let trailer = Trailer {
            count: self.count,
            sha256: hex(&self.hasher.finalize()),
        };
        line(&trailer)
    }

    fn hashed(&mut self, item: &impl Serialize) -> Vec<u8> {
        let bytes = line(item);
        self.hasher.update(&bytes);
        bytes
    }
}

fn line(item: &impl Serialize) -> Vec<u8> {
    // A struct of strings, numbers and JSON text always serialises.
    let mut bytes = serde_json::to_vec(item).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A whole backup, read and checked.
#[derive(Debug)]
pub struct Backup {
    pub header: Header,
    pub records: Vec<Record>,
}

/// Reads a whole file and checks header, count and checksum before returning anything.
pub fn read(input: &[u8]) -> Result<Backup, FormatError> {
    let mut hasher = Sha256::new();
    let mut lines = input.split_inclusive(|b| *b == b'\n').enumerate();
    let (_, first) = lines
        .next()
        .ok_or_else(|| FormatError::NoHeader("the file is empty".into()))?;
    let header: Header =
        serde_json::from_slice(first).map_err(|e| FormatError::NoHeader(e.to_string()))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(FormatError::Unsupported {
            format: header.format,
            version: header.version,
        });
    }
    hasher.update(first);
    let mut records = Vec::new();
    let mut trailer = None;
    for (index, text) in lines {
        let line = index + 1;
        if trailer.is_some() {
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Err(FormatError::AfterTrailer { line });
        }
        if !text.ends_with(b"\n") {
            // A last line without its newline was cut off mid-write.
            return Err(FormatError::Truncated);
        }
        if let Ok(end) = serde_json::from_slice::<Trailer>(text) {
            trailer = Some(end);
            continue;
        }
        let record: Record = serde_json::from_slice(text).map_err(|e| FormatError::BadRecord {
            line,
            detail: e.to_string(),
        })?;
        hasher.update(text);
        records.push(record);
    }
    let trailer = trailer.ok_or(FormatError::Truncated)?;
    let found = records.len() as u64;
    if trailer.count != found {
        return Err(FormatError::Miscount {
            said: trailer.count,
            found,
        });
    }
    if !trailer
        .sha256
        .eq_ignore_ascii_case(&hex(&hasher.finalize()))
    {
        return Err(FormatError::Checksum);
    }
    Ok(Backup { header, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let (mut encoder, mut out) = Encoder::start(at);
        for (i, value) in ["{\"a\":1}", "12345678901234567890123456789", "\"x\""]
            .iter()
            .enumerate()
        {
            out.extend(encoder.record(&Record {
                capability: "cache".into(),
                tenant: "t".into(),
                id: format!("ns/k{i}"),
                value: RawValue::from_string(value.to_string()).unwrap(),
                ttl_ms: (i > 0).then_some(1000),
                version: None,
            }));
        }
        out.extend(encoder.finish());
        out
    }

    #[test]
    fn a_written_backup_reads_back_exactly() {
        let bytes = sample();
        let backup = read(&bytes).unwrap();
        assert_eq!(backup.records.len(), 3);
        assert_eq!(
            backup.records[1].value.get(),
            "12345678901234567890123456789"
        );
        assert_eq!(backup.records[0].ttl_ms, None);
        assert_eq!(backup.header.created_at.unix_timestamp(), 1_800_000_000);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.starts_with("{\"format\":\"statekeeper-backup\",\"version\":1,"));
    }

    #[test]
    fn the_documented_example_reads() {
        assert_eq!(read(EXAMPLE.as_bytes()).unwrap().records[0].id, "users/42");
    }

    #[test]
    fn truncated_or_tampered_files_are_refused() {
        let bytes = sample();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        // Cut anywhere: before the trailer, or in the middle of a line.
        let without_trailer = format!("{}\n", lines[..4].join("\n"));
        assert_eq!(
            read(without_trailer.as_bytes()).unwrap_err(),
            FormatError::Truncated
        );
        let cut = &bytes[..bytes.len() - 10];
        assert!(matches!(
            read(cut).unwrap_err(),
            FormatError::Truncated | FormatError::BadRecord { .. }
        ));
        // A record removed, with its trailer kept.
        let dropped = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[4]);
        assert!(matches!(
            read(dropped.as_bytes()).unwrap_err(),
            FormatError::Miscount { said: 3, found: 1 }
        ));
        // One value changed.
        let edited = text.replace("{\"a\":1}", "{\"a\":2}");
        assert_eq!(read(edited.as_bytes()).unwrap_err(), FormatError::Checksum);
        // Not a backup at all, or another version.
        assert!(matches!(
            read(b"hello\n").unwrap_err(),
            FormatError::NoHeader(_)
        ));
        assert!(matches!(read(b"").unwrap_err(), FormatError::NoHeader(_)));
        let future = text.replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            read(future.as_bytes()).unwrap_err(),
            FormatError::Unsupported { version: 2, .. }
        ));
        // A broken record line names its line.
        let broken = text.replace("\"id\":\"ns/k1\"", "\"id\":7");
        assert!(matches!(
            read(broken.as_bytes()).unwrap_err(),
            FormatError::BadRecord { line: 3, .. }
        ));
        // Text after the trailer.
        let extra = format!("{text}{}\n", lines[1]);
        assert_eq!(
            read(extra.as_bytes()).unwrap_err(),
            FormatError::AfterTrailer { line: 6 }
        );
    }
}
