//! The federation bundle: a zstd-compressed tar holding `MANIFEST.json`,
//! `canonicals.ndjson`, `edges.ndjson`, `deletions.ndjson` and an optional
//! `SIGNATURE.json`. See docs/federation-bundle.md for the exact construction.
//!
//! Integrity: the manifest pins the SHA-256 and size of every data member; the DSSE
//! signature covers the manifest bytes; and the tar must be the canonical serialisation
//! of its members (fixed order, headers and padding), so no byte of the archive can
//! change without detection.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write as _};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use stellaops_store::advisories::{CanonicalAdvisory, Deletion, SourceEdge, sha256_hex};

use crate::dsse::{Envelope, PAYLOAD_TYPE, Signer, TrustedKeys};

/// Format version written into every manifest.
pub const FORMAT_VERSION: &str = "feedser-bundle/1.0";
/// Members in archive order.
pub const MEMBERS: [&str; 5] = [
    "MANIFEST.json",
    "canonicals.ndjson",
    "edges.ndjson",
    "deletions.ndjson",
    "SIGNATURE.json",
];
const DATA_MEMBERS: [&str; 3] = ["canonicals.ndjson", "edges.ndjson", "deletions.ndjson"];

/// Item counts of a bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Canonical advisories.
    pub canonicals: u64,
    /// Source edges.
    pub edges: u64,
    /// Deletions.
    pub deletions: u64,
}

impl Counts {
    /// All items.
    pub fn total(&self) -> u64 {
        self.canonicals + self.edges + self.deletions
    }
}

/// Digest and size of one member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberDigest {
    /// `sha256:<hex>` of the member's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// `MANIFEST.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `feedser-bundle/1.0`.
    pub version: String,
    /// The exporting site.
    pub site_id: String,
    /// Cursor the bundle starts after; `null` for a full export.
    pub since_cursor: Option<String>,
    /// Cursor of the last change in the bundle.
    pub cursor: String,
    /// Item counts.
    pub counts: Counts,
    /// Digest of each data member.
    pub files: BTreeMap<String, MemberDigest>,
}

/// Why a bundle was refused. Messages start with the seed's wording.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BundleError {
    /// Over the size limit.
    #[error("Bundle too large: {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Bundle size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// Not a valid archive, or a member does not match the manifest.
    #[error("Bundle is corrupt: {0}")]
    Corrupt(String),
    /// A format version we do not read.
    #[error("Unsupported bundle format {0:?}: expected {FORMAT_VERSION}")]
    UnsupportedVersion(String),
    /// Signature required but absent.
    #[error("Signature verification failed: the bundle is not signed")]
    Unsigned,
    /// Signature present but not by a trusted key, or not over this manifest.
    #[error("Signature verification failed: {0}")]
    BadSignature(String),
}

/// An opened, integrity-checked bundle (the signature is checked separately).
#[derive(Clone, Debug)]
pub struct OpenedBundle {
    /// `sha256:<hex>` of the compressed bytes.
    pub bundle_hash: String,
    /// Size of the compressed bytes.
    pub size: u64,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest bytes (what the signature covers).
    pub manifest_bytes: Vec<u8>,
    /// Canonicals in file order.
    pub canonicals: Vec<CanonicalAdvisory>,
    /// Edges in file order.
    pub edges: Vec<SourceEdge>,
    /// Deletions in file order.
    pub deletions: Vec<Deletion>,
    /// The DSSE envelope, when signed.
    pub signature: Option<Envelope>,
}

/// The 512-byte ustar header every member gets: fixed mode, owner and time, so equal
/// members give equal bytes.
fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut header = tar::Header::new_ustar();
    header.set_path(name).expect("member names are short");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    *header.as_bytes()
}

/// Zero bytes after a member of `size` bytes, up to the next 512-byte block.
fn tar_padding(size: u64) -> &'static [u8] {
    const ZEROS: [u8; 512] = [0; 512];
    &ZEROS[..(512 - (size % 512) as usize) % 512]
}

/// The members of `tar`, borrowed from it, read in one pass that also checks canonical
/// form: every header exactly as [`tar_header`] writes it, zero padding, then the two
/// zero blocks and nothing after them.
fn canonical_members(tar: &[u8]) -> Result<Vec<(&str, &[u8])>, BundleError> {
    const NOT_CANONICAL: &str = "archive is not in canonical form (headers or padding altered)";
    let corrupt = |what: String| BundleError::Corrupt(what);
    let mut members = Vec::new();
    let mut at = 0;
    loop {
        let block = tar
            .get(at..at + 512)
            .ok_or_else(|| corrupt("tar: the archive ends early".into()))?;
        if block.iter().all(|b| *b == 0) {
            break;
        }
        let header = tar::Header::from_byte_slice(block);
        let name = header.path_bytes().into_owned();
        let name = MEMBERS
            .iter()
            .copied()
            .find(|m| m.as_bytes() == name.as_slice())
            .ok_or_else(|| {
                corrupt(format!(
                    "unexpected member {:?}",
                    String::from_utf8_lossy(&name)
                ))
            })?;
        let size = header
            .size()
            .map_err(|e| corrupt(format!("tar: {name}: {e}")))?;
        if tar_header(name, size) != *block {
            return Err(corrupt(NOT_CANONICAL.into()));
        }
        let start = at + 512;
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| start.checked_add(size))
            .filter(|end| *end <= tar.len())
            .ok_or_else(|| corrupt(format!("tar: {name} is cut short")))?;
        let padding = tar_padding(size);
        if tar.get(end..end + padding.len()) != Some(padding) {
            return Err(corrupt(NOT_CANONICAL.into()));
        }
        members.push((name, &tar[start..end]));
        at = end + padding.len();
    }
    if tar.len() != at + 1024 || tar[at..].iter().any(|b| *b != 0) {
        return Err(corrupt(NOT_CANONICAL.into()));
    }
    Ok(members)
}

/// Lines given by reference are gathered into pieces of about this size before they are
/// handed to the compressing thread (lines given as shared [`Bytes`] go as they are).
const BLOCK_BYTES: usize = 256 << 10;

/// Shared lines shorter than this are copied into the current piece rather than sent on
/// their own: a copy is cheaper than handing a small piece to another thread.
const SHARED_FROM: usize = 16 << 10;

/// Pieces waiting for the compressing thread before a writer waits for it.
const QUEUED_PIECES: usize = 16;

/// A finished data member: its digest and its zstd frame.
struct FinishedMember {
    digest: MemberDigest,
    frame: Vec<u8>,
}

/// Compression threads a writer uses by default: one per core the process may use, at
/// most [`MAX_WORKERS`]. The bytes do not depend on it (see [`BundleWriter::with_workers`]).
pub fn default_workers() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() as u32)
        .min(MAX_WORKERS)
}

/// Most compression threads per data member.
const MAX_WORKERS: u32 = 8;

/// Size of zstd's multithreaded jobs (its default at level 3 is 8 MiB). A job is copied
/// into a buffer and compressed there; at 1 MiB the buffer is still in the CPU's cache
/// when a worker compresses it, and fewer fresh pages are touched per member: a fifth
/// less compression time for the same data in the federation benchmark, and a frame
/// 2 % smaller on its bundles. Changing it changes the bytes of every bundle.
const JOB_BYTES: u32 = 1 << 20;

/// How much of the previous job each job loads as its prefix, as zstd's `overlapLog`:
/// 3 is 1/64 of the 2 MiB window (32 KiB), where zstd's default at level 3 (6) is 1/8
/// (256 KiB). Loading the prefix (`ZSTD_fillDoubleHashTable`) was 8 % of the export's
/// compression time in a profile of the federation benchmark; at 32 KiB it is an eighth of
/// that, and the bundle is 0.6 % smaller (9,169,225 bytes against 9,221,944 on the
/// benchmark's set). Changing it changes the bytes of every bundle.
const OVERLAP_LOG: u32 = 3;

/// Hashes one member's pieces as they come and hands them to zstd, which compresses them
/// on `workers` threads of its own.
fn compress_member(
    pieces: std::sync::mpsc::Receiver<Bytes>,
    level: i32,
    workers: u32,
) -> FinishedMember {
    let mut encoder =
        zstd::stream::write::Encoder::new(Vec::new(), level).expect("zstd accepts the level");
    // zstd's multithreaded mode cuts the member into jobs of exactly JOB_BYTES (the last
    // may be shorter), never where a write ended (it gathers each job in a buffer of its
    // own), so the frame is the same for any number of workers ≥ 1 and any pieces.
    encoder
        .multithread(workers.max(1))
        .expect("zstd is built with multithreading");
    encoder
        .set_parameter(zstd::stream::raw::CParameter::JobSize(JOB_BYTES))
        .expect("zstd accepts the job size");
    encoder
        .set_parameter(zstd::stream::raw::CParameter::OverlapSizeLog(OVERLAP_LOG))
        .expect("zstd accepts the overlap");
    let (mut hasher, mut size) = (Sha256::new(), 0u64);
    for piece in pieces {
        hasher.update(&piece);
        size += piece.len() as u64;
        encoder.write_all(&piece).expect("compressing into memory");
    }
    FinishedMember {
        digest: MemberDigest {
            sha256: format!("sha256:{}", hex::encode(hasher.finalize())),
            size,
        },
        frame: encoder.finish().expect("compressing into memory"),
    }
}

/// Newlines in `bytes`.
fn newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// One data member being written: its bytes go, in order, to a thread of its own that
/// hashes and compresses them. The three members of a [`BundleWriter`] may be written at
/// the same time ([`BundleWriter::data_members`]).
pub struct MemberWriter {
    /// Bytes given by reference, not yet handed to the thread.
    block: BytesMut,
    lines: u64,
    pieces: Option<std::sync::mpsc::SyncSender<Bytes>>,
    compressor: Option<std::thread::JoinHandle<FinishedMember>>,
}

impl MemberWriter {
    fn new(level: i32, workers: u32) -> Self {
        let (pieces, queue) = std::sync::mpsc::sync_channel(QUEUED_PIECES);
        MemberWriter {
            block: BytesMut::new(),
            lines: 0,
            pieces: Some(pieces),
            compressor: Some(
                std::thread::Builder::new()
                    .name("bundle-compress".into())
                    .spawn(move || compress_member(queue, level, workers))
                    .expect("a thread can be started"),
            ),
        }
    }

    fn send(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            // The thread only stops when its sender is dropped (in finish()), so it is there.
            self.pieces
                .as_ref()
                .expect("a member is not written after finish()")
                .send(piece)
                .expect("the compressing thread runs until finish()");
        }
    }

    fn send_block(&mut self) {
        let block = self.block.split().freeze();
        self.send(block);
    }

    /// Append one JSON object (given without its newline).
    pub fn line(&mut self, line: &[u8]) {
        self.joined_lines(line);
    }

    /// Append lines joined by newlines (with none after the last).
    pub fn joined_lines(&mut self, lines: &[u8]) {
        self.lines += 1 + newlines(lines);
        if self.block.capacity() - self.block.len() < lines.len() + 1 {
            self.block.reserve(BLOCK_BYTES.max(lines.len() + 1));
        }
        self.block.extend_from_slice(lines);
        self.block.extend_from_slice(b"\n");
        if self.block.len() >= BLOCK_BYTES {
            self.send_block();
        }
    }

    /// [`MemberWriter::joined_lines`] for lines already in a shared buffer (a received
    /// message): they are handed to the compressing thread without being copied.
    pub fn joined_lines_shared(&mut self, lines: Bytes) {
        if lines.len() < SHARED_FROM {
            return self.joined_lines(&lines);
        }
        self.lines += 1 + newlines(&lines);
        self.send_block();
        self.send(lines);
        self.send(Bytes::from_static(b"\n"));
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    fn finish(&mut self) -> FinishedMember {
        self.send_block();
        drop(self.pieces.take());
        self.compressor
            .take()
            .expect("finish() is called once")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Writes a bundle while its data arrives: each data member is hashed, on a thread of
/// its own, and compressed by zstd's worker threads as its lines come in (export streams
/// them out of the database while PostgreSQL is still sending, two tables at once), and
/// the manifest, which needs every digest, is put in front at the end. The result is the
/// concatenation of zstd frames described in docs/federation-bundle.md ("Compression");
/// the same members and key give the same bytes, however the lines arrived and however
/// many threads compressed them.
pub struct BundleWriter {
    level: i32,
    members: [MemberWriter; 3],
    /// Members started with [`BundleWriter::next_member`].
    started: usize,
}

impl BundleWriter {
    /// A writer compressing at zstd `level` on [`default_workers`] threads.
    pub fn new(level: i32) -> Self {
        Self::with_workers(level, default_workers())
    }

    /// A writer compressing at zstd `level` on `workers` threads per member (0 counts as
    /// 1). The output is the same for every count.
    pub fn with_workers(level: i32, workers: u32) -> Self {
        BundleWriter {
            level,
            members: std::array::from_fn(|_| MemberWriter::new(level, workers)),
            started: 0,
        }
    }

    /// The three data members (`canonicals.ndjson`, `edges.ndjson`, `deletions.ndjson`),
    /// to be written in any order or at the same time.
    pub fn data_members(&mut self) -> [&mut MemberWriter; 3] {
        let [canonicals, edges, deletions] = &mut self.members;
        [canonicals, edges, deletions]
    }

    /// Start the next data member (`canonicals.ndjson`, then `edges.ndjson`, then
    /// `deletions.ndjson`) for [`BundleWriter::line`] and [`BundleWriter::joined_lines`].
    pub fn next_member(&mut self) {
        assert!(
            self.started < DATA_MEMBERS.len(),
            "a bundle has three data members"
        );
        self.started += 1;
    }

    fn current(&mut self) -> &mut MemberWriter {
        let i = self
            .started
            .checked_sub(1)
            .expect("next_member() is called before the first line");
        &mut self.members[i]
    }

    /// Append one JSON object (given without its newline) to the current member.
    pub fn line(&mut self, line: &[u8]) {
        self.current().line(line);
    }

    /// Append lines joined by newlines (with none after the last) to the current member.
    pub fn joined_lines(&mut self, lines: &[u8]) {
        self.current().joined_lines(lines);
    }

    /// Lines written so far to each data member.
    pub fn counts(&self) -> Counts {
        let [canonicals, edges, deletions] = &self.members;
        Counts {
            canonicals: canonicals.lines(),
            edges: edges.lines(),
            deletions: deletions.lines(),
        }
    }

    /// End the members (members never written are empty), write the manifest and, with
    /// `signer`, the signature; return the bundle's bytes.
    pub fn finish(
        mut self,
        site_id: &str,
        since_cursor: Option<String>,
        cursor: String,
        signer: Option<&Signer>,
    ) -> Vec<u8> {
        let counts = self.counts();
        let level = self.level;
        let finished: Vec<FinishedMember> = self.members.iter_mut().map(|m| m.finish()).collect();
        let manifest = Manifest {
            version: FORMAT_VERSION.to_string(),
            site_id: site_id.to_string(),
            since_cursor,
            cursor,
            counts,
            files: DATA_MEMBERS
                .iter()
                .zip(&finished)
                .map(|(name, member)| (name.to_string(), member.digest.clone()))
                .collect(),
        };
        let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        manifest_bytes.push(b'\n');
        let signature = signer.map(|s| {
            let mut bytes =
                serde_json::to_vec_pretty(&s.sign(&manifest_bytes)).expect("envelope serializes");
            bytes.push(b'\n');
            bytes
        });

        let compress =
            |bytes: &[u8]| zstd::bulk::compress(bytes, level).expect("zstd compresses in memory");
        // Frame 0: the manifest member and the first data member's header.
        let mut head = tar_header(MEMBERS[0], manifest_bytes.len() as u64).to_vec();
        head.extend_from_slice(&manifest_bytes);
        head.extend_from_slice(tar_padding(manifest_bytes.len() as u64));
        head.extend_from_slice(&tar_header(DATA_MEMBERS[0], finished[0].digest.size));
        let mut out = compress(&head);
        for (i, member) in finished.iter().enumerate() {
            // The member's own frame, then one with its padding and what follows it: the
            // next member's header, or the signature member and the end of the archive.
            out.extend_from_slice(&member.frame);
            let mut between = tar_padding(member.digest.size).to_vec();
            match finished.get(i + 1) {
                Some(next) => {
                    between.extend_from_slice(&tar_header(DATA_MEMBERS[i + 1], next.digest.size))
                }
                None => {
                    if let Some(signature) = &signature {
                        between.extend_from_slice(&tar_header(MEMBERS[4], signature.len() as u64));
                        between.extend_from_slice(signature);
                        between.extend_from_slice(tar_padding(signature.len() as u64));
                    }
                    between.extend_from_slice(&[0; 1024]);
                }
            }
            out.extend_from_slice(&compress(&between));
        }
        out
    }
}

/// What goes into a bundle.
pub struct Contents<'a> {
    /// The exporting site.
    pub site_id: &'a str,
    /// Cursor the bundle starts after; `None` for a full export.
    pub since_cursor: Option<String>,
    /// Cursor of the last change in the bundle.
    pub cursor: String,
    /// Canonicals, in change order.
    pub canonicals: &'a [CanonicalAdvisory],
    /// Edges, in change order.
    pub edges: &'a [SourceEdge],
    /// Deletions, in change order.
    pub deletions: &'a [Deletion],
}

/// Write a bundle. The same inputs (and key) give byte-identical output.
pub fn write(contents: &Contents<'_>, signer: Option<&Signer>, compression_level: i32) -> Vec<u8> {
    write_with_workers(contents, signer, compression_level, default_workers())
}

/// [`write`] compressing on `workers` threads; the bytes are the same for every count.
pub fn write_with_workers(
    contents: &Contents<'_>,
    signer: Option<&Signer>,
    compression_level: i32,
    workers: u32,
) -> Vec<u8> {
    fn member<T: Serialize>(writer: &mut BundleWriter, items: &[T], line: &mut Vec<u8>) {
        writer.next_member();
        for item in items {
            line.clear();
            serde_json::to_writer(&mut *line, item).expect("items serialize");
            writer.line(line);
        }
    }
    let mut writer = BundleWriter::with_workers(compression_level, workers);
    let mut line = Vec::new();
    member(&mut writer, contents.canonicals, &mut line);
    member(&mut writer, contents.edges, &mut line);
    member(&mut writer, contents.deletions, &mut line);
    writer.finish(
        contents.site_id,
        contents.since_cursor.clone(),
        contents.cursor.clone(),
        signer,
    )
}

fn parse_ndjson<T: serde::de::DeserializeOwned>(
    name: &str,
    bytes: &[u8],
) -> Result<Vec<T>, BundleError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| BundleError::Corrupt(format!("{name} is not UTF-8")))?;
    parse_lines(name, text, 0)
}

/// The objects on `text`'s lines, the first of which is line `first_line + 1` of `name`.
fn parse_lines<T: serde::de::DeserializeOwned>(
    name: &str,
    text: &str,
    first_line: usize,
) -> Result<Vec<T>, BundleError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                BundleError::Corrupt(format!("{name} line {}: {e}", first_line + i + 1))
            })
        })
        .collect()
}

/// `text` cut after the first line break at or past its middle (all of it first when
/// there is none), so each half holds whole lines.
fn split_lines_in_halves(text: &str) -> (&str, &str) {
    let middle = text.len() / 2;
    let cut = text.as_bytes()[middle..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(text.len(), |at| middle + at + 1);
    text.split_at(cut)
}

/// [`parse_ndjson`] with the second half of the lines parsed on another thread: the
/// canonicals are most of a bundle, and parsing them most of its opening.
fn parse_ndjson_halves<T: serde::de::DeserializeOwned + Send>(
    name: &str,
    bytes: &[u8],
) -> Result<Vec<T>, BundleError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| BundleError::Corrupt(format!("{name} is not UTF-8")))?;
    let (first, second) = split_lines_in_halves(text);
    let second_from = first.bytes().filter(|b| *b == b'\n').count();
    std::thread::scope(|scope| {
        let second = scope.spawn(|| parse_lines::<T>(name, second, second_from));
        let mut items = parse_lines(name, first, 0);
        let second = second.join().expect("parsing does not panic");
        // An error in the first half is the first in the file.
        if let Ok(items) = &mut items {
            items.extend(second?);
        }
        items
    })
}

/// Open and check a bundle: size limit, archive structure, canonical form, format
/// version, member digests and counts, merge hashes, and the envelope's payload.
pub fn open(bytes: &[u8], max_size: u64) -> Result<OpenedBundle, BundleError> {
    open_with_limit(bytes, max_size, default_expanded_limit(max_size))
}

/// [`open`] with an explicit cap on the decompressed archive (`open` allows 64 × the
/// size limit): a server sizes it to its memory.
pub fn open_with_limit(
    bytes: &[u8],
    max_size: u64,
    max_expanded: u64,
) -> Result<OpenedBundle, BundleError> {
    let unpacked = unpack_with_limit(bytes, max_size, max_expanded)?;
    let parsed = unpacked.parse()?;
    Ok(unpacked.into_opened(parsed))
}

/// The decompressed archive `open` allows for a bundle of at most `max_size` bytes.
pub fn default_expanded_limit(max_size: u64) -> u64 {
    max_size.saturating_mul(64).max(1 << 20)
}

/// A bundle decompressed, its archive form and manifest checked, its data members not yet
/// checked against the manifest nor parsed: the first half of [`open`], so an import can
/// start on the database while [`Unpacked::parse`] runs.
#[derive(Debug)]
pub struct Unpacked {
    /// `sha256:<hex>` of the compressed bytes.
    pub bundle_hash: String,
    /// Size of the compressed bytes.
    pub size: u64,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest bytes (what the signature covers).
    pub manifest_bytes: Vec<u8>,
    tar: Vec<u8>,
    /// Where each of [`DATA_MEMBERS`] lies in `tar`.
    data: [std::ops::Range<usize>; 3],
    /// Where `SIGNATURE.json` lies in `tar`, when present.
    signature: Option<std::ops::Range<usize>>,
}

/// A bundle's data members, checked against its manifest and parsed, and its envelope:
/// the second half of [`open`].
#[derive(Clone, Debug)]
pub struct Parsed {
    /// Canonicals in file order.
    pub canonicals: Vec<CanonicalAdvisory>,
    /// Edges in file order.
    pub edges: Vec<SourceEdge>,
    /// Deletions in file order.
    pub deletions: Vec<Deletion>,
    /// The DSSE envelope, when signed.
    pub signature: Option<Envelope>,
}

/// What an import must know of a canonical before the bundle is parsed (the
/// `canonical-imported` event's fields), read by a quick pass over its line.
#[derive(Deserialize, Debug, PartialEq, Eq)]
pub struct CanonicalKey<'a> {
    /// The identity.
    #[serde(borrow)]
    pub merge_hash: std::borrow::Cow<'a, str>,
    /// CVE id.
    #[serde(default)]
    pub cve: Option<std::borrow::Cow<'a, str>>,
    /// Affected package key.
    #[serde(borrow)]
    pub affects_key: std::borrow::Cow<'a, str>,
    /// Severity.
    #[serde(default)]
    pub severity: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> CanonicalKey<'a> {
    /// The key of a parsed canonical.
    pub fn of(canonical: &'a CanonicalAdvisory) -> Self {
        use std::borrow::Cow::Borrowed;
        CanonicalKey {
            merge_hash: Borrowed(&canonical.merge_hash),
            cve: canonical.cve.as_deref().map(Borrowed),
            affects_key: Borrowed(&canonical.affects_key),
            severity: canonical.severity.as_deref().map(Borrowed),
        }
    }
}

/// An edge's source, read by a quick pass over its line.
#[derive(Deserialize)]
struct EdgeSource<'a> {
    #[serde(borrow)]
    source: std::borrow::Cow<'a, str>,
}

/// The first half of [`open`]: size limit, decompression, archive form, member names,
/// format version and manifest.
pub fn unpack(bytes: &[u8], max_size: u64) -> Result<Unpacked, BundleError> {
    unpack_with_limit(bytes, max_size, default_expanded_limit(max_size))
}

/// [`unpack`] with an explicit cap on the decompressed archive.
pub fn unpack_with_limit(
    bytes: &[u8],
    max_size: u64,
    max_expanded: u64,
) -> Result<Unpacked, BundleError> {
    let size = bytes.len() as u64;
    if size > max_size {
        return Err(BundleError::TooLarge {
            size,
            max: max_size,
        });
    }
    let opening = std::time::Instant::now();
    let bundle_hash = sha256_hex(bytes);
    // Bound decompression so a small bomb cannot exhaust memory.
    let limit = max_expanded;
    // Room for a typical expansion up front (NDJSON shrinks 15–20× at level 3), so the
    // archive is not copied on every doubling; untouched capacity costs no memory, and a
    // reservation the allocator refuses is simply not made.
    let mut tar_bytes = Vec::new();
    let _ = tar_bytes.try_reserve_exact(bytes.len().saturating_mul(20).min(limit as usize));
    zstd::stream::read::Decoder::new(bytes)
        .map_err(|e| BundleError::Corrupt(format!("not zstd: {e}")))?
        .take(limit + 1)
        .read_to_end(&mut tar_bytes)
        .map_err(|e| BundleError::Corrupt(format!("zstd: {e}")))?;
    if tar_bytes.len() as u64 > limit {
        return Err(BundleError::Corrupt(format!(
            "expands to more than {limit} bytes"
        )));
    }

    tracing::debug!(
        elapsed_ms = opening.elapsed().as_millis() as u64,
        bytes = tar_bytes.len(),
        "bundle decompressed"
    );
    let members = canonical_members(&tar_bytes)?;
    tracing::debug!(
        elapsed_ms = opening.elapsed().as_millis() as u64,
        "archive form checked"
    );
    let names: Vec<&str> = members.iter().map(|(n, _)| *n).collect();
    let expected: &[&str] = if names.len() == 5 {
        &MEMBERS
    } else {
        &MEMBERS[..4]
    };
    if names != expected {
        return Err(BundleError::Corrupt(format!(
            "members {names:?}, expected {expected:?} in that order"
        )));
    }

    let member = |name: &str| members.iter().find(|(n, _)| *n == name).map(|(_, b)| *b);
    let manifest_bytes = member("MANIFEST.json").expect("checked above").to_vec();
    let manifest_value: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| BundleError::Corrupt(format!("MANIFEST.json: {e}")))?;
    match manifest_value.get("version").and_then(|v| v.as_str()) {
        Some(FORMAT_VERSION) => {}
        other => {
            return Err(BundleError::UnsupportedVersion(
                other.unwrap_or("none").to_string(),
            ));
        }
    }
    let manifest: Manifest = serde_json::from_value(manifest_value)
        .map_err(|e| BundleError::Corrupt(format!("MANIFEST.json: {e}")))?;
    if let Some(name) = DATA_MEMBERS
        .iter()
        .find(|n| !manifest.files.contains_key(**n))
    {
        return Err(BundleError::Corrupt(format!("manifest lacks {name}")));
    }
    if manifest.files.len() != DATA_MEMBERS.len() {
        return Err(BundleError::Corrupt("manifest lists unknown files".into()));
    }
    // Members are slices of the archive: kept as ranges, so the archive can move.
    let range = |name: &str| {
        member(name).map(|bytes| {
            let start = bytes.as_ptr() as usize - tar_bytes.as_ptr() as usize;
            start..start + bytes.len()
        })
    };
    let data = DATA_MEMBERS.map(|name| range(name).expect("checked above"));
    let signature = range("SIGNATURE.json");
    Ok(Unpacked {
        bundle_hash,
        size,
        manifest,
        manifest_bytes,
        tar: tar_bytes,
        data,
        signature,
    })
}

impl Unpacked {
    fn member(&self, name: &str) -> &[u8] {
        let at = DATA_MEMBERS
            .iter()
            .position(|n| *n == name)
            .expect("a data member");
        &self.tar[self.data[at].clone()]
    }

    /// The second half of [`open`]: each data member against its digest and size in the
    /// manifest, then parsed and checked (merge hashes, nothing listed twice, counts),
    /// and the envelope read. Canonicals and the other members at once, on three
    /// threads; a few hundred milliseconds for 100,000 canonicals.
    pub fn parse(&self) -> Result<Parsed, BundleError> {
        let opening = std::time::Instant::now();
        let (canonicals, rest) = std::thread::scope(|scope| {
            let edges_and_deletions = scope.spawn(|| self.parse_edges_and_deletions());
            let canonicals = self.parse_canonicals();
            let rest = edges_and_deletions
                .join()
                .expect("bundle parsing does not panic");
            (canonicals, rest)
        });
        tracing::debug!(
            elapsed_ms = opening.elapsed().as_millis() as u64,
            "members checked and parsed"
        );
        // The first failing member in archive order decides the message.
        let canonicals = canonicals?;
        let (edges, deletions) = rest?;
        self.check_counts(canonicals.len(), edges.len(), deletions.len())?;
        Ok(Parsed {
            canonicals,
            edges,
            deletions,
            signature: self.signature()?,
        })
    }

    fn digest_matches(&self, name: &str) -> Result<(), BundleError> {
        let bytes = self.member(name);
        let want = &self.manifest.files[name];
        if want.size != bytes.len() as u64 || want.sha256 != sha256_hex(bytes) {
            return Err(BundleError::Corrupt(format!(
                "{name} does not match its digest in the manifest"
            )));
        }
        Ok(())
    }

    /// `canonicals.ndjson` against its digest, parsed, each merge hash checked against
    /// its identity and none listed twice: the part of [`Unpacked::parse`] an import
    /// needs first. On two threads.
    pub fn parse_canonicals(&self) -> Result<Vec<CanonicalAdvisory>, BundleError> {
        self.digest_matches("canonicals.ndjson")?;
        let canonicals: Vec<CanonicalAdvisory> =
            parse_ndjson_halves("canonicals.ndjson", self.member("canonicals.ndjson"))?;
        // Each half on its own thread; the first bad one in the file is reported.
        let first_bad = |canonicals: &[CanonicalAdvisory]| {
            canonicals.iter().position(|c| {
                !CanonicalAdvisory::is_merge_hash_of(&c.merge_hash, &c.vuln_id, &c.affects_key)
            })
        };
        let (first, second) = canonicals.split_at(canonicals.len() / 2);
        let bad = std::thread::scope(|scope| {
            let in_second = scope.spawn(|| first_bad(second));
            let in_first = first_bad(first);
            let in_second = in_second.join().expect("hashing does not panic");
            in_first.or(in_second.map(|at| first.len() + at))
        });
        if let Some(bad) = bad.map(|at| &canonicals[at]) {
            return Err(BundleError::Corrupt(format!(
                "canonical {} has a merge hash that does not match its identity",
                bad.merge_hash
            )));
        }
        // An export holds each canonical once (its latest state); two copies would
        // leave which one wins to chance.
        let mut seen = HashSet::with_capacity(canonicals.len());
        if let Some(twice) = canonicals.iter().find(|c| !seen.insert(&c.merge_hash)) {
            return Err(BundleError::Corrupt(format!(
                "canonicals.ndjson lists canonical {} twice",
                twice.merge_hash
            )));
        }
        Ok(canonicals)
    }

    /// `edges.ndjson` and `deletions.ndjson` against their digests, parsed, no edge
    /// listed twice: the rest of [`Unpacked::parse`].
    pub fn parse_edges_and_deletions(
        &self,
    ) -> Result<(Vec<SourceEdge>, Vec<Deletion>), BundleError> {
        self.digest_matches("edges.ndjson")?;
        self.digest_matches("deletions.ndjson")?;
        let edges: Vec<SourceEdge> = parse_ndjson("edges.ndjson", self.member("edges.ndjson"))?;
        let deletions: Vec<Deletion> =
            parse_ndjson("deletions.ndjson", self.member("deletions.ndjson"))?;
        let mut seen = HashSet::with_capacity(edges.len());
        if let Some(twice) = edges
            .iter()
            .find(|e| !seen.insert((&e.merge_hash, &e.source, &e.source_advisory_id)))
        {
            return Err(BundleError::Corrupt(format!(
                "edges.ndjson lists the edge {} {} {} twice",
                twice.merge_hash, twice.source, twice.source_advisory_id
            )));
        }
        Ok((edges, deletions))
    }

    /// That the members hold as many items as the manifest counts.
    pub fn check_counts(
        &self,
        canonicals: usize,
        edges: usize,
        deletions: usize,
    ) -> Result<(), BundleError> {
        let counts = Counts {
            canonicals: canonicals as u64,
            edges: edges as u64,
            deletions: deletions as u64,
        };
        if counts != self.manifest.counts {
            return Err(BundleError::Corrupt(format!(
                "counts {:?} do not match the manifest {:?}",
                counts, self.manifest.counts
            )));
        }
        Ok(())
    }

    /// The DSSE envelope in `SIGNATURE.json`, when there is one.
    pub fn signature(&self) -> Result<Option<Envelope>, BundleError> {
        let Some(range) = &self.signature else {
            return Ok(None);
        };
        serde_json::from_slice(&self.tar[range.clone()])
            .map(Some)
            .map_err(|e| {
                BundleError::BadSignature(format!("SIGNATURE.json is not a DSSE envelope: {e}"))
            })
    }

    /// Each canonical's [`CanonicalKey`], in file order, from a quick pass over
    /// `canonicals.ndjson` that neither checks the member's digest nor parses the rest of
    /// each line; `None` when a line does not read (then only [`Unpacked::parse`] can
    /// say why). What it returns is only to be trusted once `parse` has succeeded and
    /// agrees with it.
    pub fn canonical_keys(&self) -> Option<Vec<CanonicalKey<'_>>> {
        quick_pass(self.member("canonicals.ndjson"))
    }

    /// Each edge's source, in file order, by a quick pass like
    /// [`Unpacked::canonical_keys`].
    pub fn edge_sources(&self) -> Option<Vec<std::borrow::Cow<'_, str>>> {
        quick_pass::<EdgeSource>(self.member("edges.ndjson"))
            .map(|edges| edges.into_iter().map(|e| e.source).collect())
    }

    /// The bundle as [`open`] returns it.
    pub fn into_opened(self, parsed: Parsed) -> OpenedBundle {
        OpenedBundle {
            bundle_hash: self.bundle_hash,
            size: self.size,
            manifest: self.manifest,
            manifest_bytes: self.manifest_bytes,
            canonicals: parsed.canonicals,
            edges: parsed.edges,
            deletions: parsed.deletions,
            signature: parsed.signature,
        }
    }

    /// [`OpenedBundle::verify_signature`] for `envelope` over this bundle's manifest.
    pub fn verify_signature(
        &self,
        envelope: Option<&Envelope>,
        trusted: &TrustedKeys,
    ) -> Result<String, BundleError> {
        verify_manifest_signature(&self.manifest, &self.manifest_bytes, envelope, trusted)
    }
}

/// The objects on `bytes`' non-empty lines (the lines [`parse_ndjson`] reads), as `T`;
/// `None` at the first that does not read. The second half of the lines on another
/// thread, as [`parse_ndjson_halves`] does.
fn quick_pass<'a, T: Deserialize<'a> + Send>(bytes: &'a [u8]) -> Option<Vec<T>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (first, second) = split_lines_in_halves(text);
    let lines = |text: &'a str| -> Option<Vec<T>> {
        text.lines()
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    std::thread::scope(|scope| {
        let second = scope.spawn(|| lines(second));
        let mut items = lines(first)?;
        items.extend(second.join().expect("reading does not panic")?);
        Some(items)
    })
}

/// Verify `envelope` against `trusted` as the signature over `manifest_bytes`; returns
/// the signing key's id. Only keys trusted for the manifest's `site_id` count (see
/// [`TrustedKeys::for_site`]).
fn verify_manifest_signature(
    manifest: &Manifest,
    manifest_bytes: &[u8],
    envelope: Option<&Envelope>,
    trusted: &TrustedKeys,
) -> Result<String, BundleError> {
    let trusted = trusted.for_site(&manifest.site_id);
    let envelope = envelope.ok_or(BundleError::Unsigned)?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(BundleError::BadSignature(format!(
            "payload type {:?}",
            envelope.payload_type
        )));
    }
    let payload = STANDARD
        .decode(&envelope.payload)
        .map_err(|_| BundleError::BadSignature("payload is not base64".into()))?;
    if payload != manifest_bytes {
        return Err(BundleError::BadSignature(
            "the signed payload is not this bundle's manifest".into(),
        ));
    }
    trusted.verify(envelope, &payload).ok_or_else(|| {
        BundleError::BadSignature(format!(
            "no key trusted for site {} verifies the signature (key mismatch)",
            manifest.site_id
        ))
    })
}

impl OpenedBundle {
    /// Verify the DSSE signature against `trusted`; returns the signing key's id.
    /// Only keys trusted for the manifest's `site_id` count (see [`TrustedKeys::for_site`]).
    pub fn verify_signature(&self, trusted: &TrustedKeys) -> Result<String, BundleError> {
        verify_manifest_signature(
            &self.manifest,
            &self.manifest_bytes,
            self.signature.as_ref(),
            trusted,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_parse_like_one_pass_and_name_the_first_bad_line() {
        let lines: Vec<String> = (0..9).map(|i| format!("{{\"n\":{i}}}")).collect();
        let text = lines.join("\n") + "\n";
        let whole: Vec<serde_json::Value> = parse_ndjson("m", text.as_bytes()).unwrap();
        let halves: Vec<serde_json::Value> = parse_ndjson_halves("m", text.as_bytes()).unwrap();
        assert_eq!(whole, halves);
        assert_eq!(halves.len(), 9);
        let error = |bad: &[usize]| {
            let mut lines = lines.clone();
            for i in bad {
                lines[*i] = "{".into();
            }
            let text = lines.join("\n");
            parse_ndjson_halves::<serde_json::Value>("m", text.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(error(&[7]).contains("m line 8:"), "{}", error(&[7]));
        assert!(error(&[1, 7]).contains("m line 2:"), "{}", error(&[1, 7]));
        assert!(error(&[8]).contains("m line 9:"), "{}", error(&[8]));
    }

    #[test]
    fn the_first_canonical_with_a_wrong_merge_hash_is_reported() {
        let canonical = |i: usize| {
            let (vuln_id, affects_key) = (format!("CVE-2024-{i:04}"), format!("pkg:npm/p{i}"));
            CanonicalAdvisory {
                merge_hash: CanonicalAdvisory::merge_hash_of(&vuln_id, &affects_key),
                vuln_id,
                cve: None,
                aliases: vec![],
                affects_key,
                ecosystem: "npm".into(),
                ranges: serde_json::Value::Null,
                versions: vec![],
                severity: None,
                cvss: None,
                summary: None,
                published: None,
                modified: None,
                withdrawn: None,
            }
        };
        let open_with_bad = |bad: &[usize]| {
            let mut canonicals: Vec<CanonicalAdvisory> = (0..10).map(canonical).collect();
            for i in bad {
                canonicals[*i].merge_hash = format!("sha256:{:064x}", i);
            }
            let bytes = write(
                &Contents {
                    site_id: "s",
                    since_cursor: None,
                    cursor: "2025-01-01T00:00:00.000Z#10".into(),
                    canonicals: &canonicals,
                    edges: &[],
                    deletions: &[],
                },
                None,
                3,
            );
            open(&bytes, 1 << 20).map(|_| ()).unwrap_err().to_string()
        };
        for (bad, named) in [(&[7][..], 7), (&[2, 7][..], 2), (&[0][..], 0)] {
            let error = open_with_bad(bad);
            assert!(
                error.contains(&format!("canonical sha256:{:064x} has a merge hash", named)),
                "{error}"
            );
        }
    }
}
