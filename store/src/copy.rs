//! Bulk writes through `COPY … FROM STDIN (FORMAT binary)`, with the rows built on a
//! thread of their own while the server stores the ones already sent.
//!
//! The binary format spares the server parsing timestamps, integers and arrays from
//! text, and the client escaping every value: 100,000 canonicals and their edges are
//! stored in about a fifth less server time than from COPY's text format (psql, three
//! alternating rounds on a loaded 2-core machine).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::Result;

/// Rows are sent in chunks of about this size: the server stores one chunk while the
/// next is built.
const CHUNK_BYTES: usize = 1 << 20;

/// Built chunks waiting to be sent; more would only hold memory.
const CHUNKS_AHEAD: usize = 4;

/// The binary COPY header: signature, flags, no header extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The binary COPY trailer: a field count of -1.
const TRAILER: &[u8] = &[0xff, 0xff];

/// The `text` type's oid, which binary arrays name as their element type.
const TEXT_OID: i32 = 25;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Rows in COPY's binary format: per row a field count, then each field as its length
/// (-1 for NULL) and bytes. Fields are appended in the COPY statement's column order.
pub struct CopyRows {
    buf: Vec<u8>,
    row_start: usize,
    fields: i16,
}

impl CopyRows {
    fn new() -> Self {
        CopyRows {
            buf: Vec::with_capacity(CHUNK_BYTES + (64 << 10)),
            row_start: 0,
            fields: 0,
        }
    }

    fn begin_row(&mut self) {
        self.row_start = self.buf.len();
        self.fields = 0;
        self.buf.extend_from_slice(&[0, 0]);
    }

    fn end_row(&mut self) {
        let at = self.row_start;
        self.buf[at..at + 2].copy_from_slice(&self.fields.to_be_bytes());
    }

    fn discard_row(&mut self) {
        self.buf.truncate(self.row_start);
    }

    /// Append a field whose bytes `write` appends; returns where they are in the buffer.
    fn value(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> std::ops::Range<usize> {
        self.fields += 1;
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        write(&mut self.buf);
        let len = i32::try_from(self.buf.len() - at - 4).expect("a COPY value fits in 2 GiB");
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        at + 4..self.buf.len()
    }

    fn null(&mut self) -> &mut Self {
        self.fields += 1;
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// A `text` field (`None`: NULL).
    pub fn text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            None => self.null(),
            Some(v) => {
                self.value(|b| b.extend_from_slice(v.as_bytes()));
                self
            }
        }
    }

    /// A `text` field holding `value` serialized as JSON; returns the JSON bytes.
    pub fn json_text(&mut self, value: &impl serde::Serialize) -> &[u8] {
        let range = self.value(|b| serde_json::to_writer(b, value).expect("values serialize"));
        &self.buf[range]
    }

    /// A `jsonb` field holding `value` serialized as JSON (`None`: NULL).
    pub fn jsonb(&mut self, value: Option<&impl serde::Serialize>) -> &mut Self {
        match value {
            None => self.null(),
            Some(v) => {
                self.value(|b| {
                    // jsonb's binary form: version 1, then the JSON text.
                    b.push(1);
                    serde_json::to_writer(b, v).expect("values serialize")
                });
                self
            }
        }
    }

    /// A `bigint` field.
    pub fn int8(&mut self, value: i64) -> &mut Self {
        self.value(|b| b.extend_from_slice(&value.to_be_bytes()));
        self
    }

    /// A `timestamptz` field (`None`: NULL), to the nearest microsecond (PostgreSQL's
    /// precision).
    pub fn timestamptz(&mut self, value: Option<DateTime<Utc>>) -> &mut Self {
        match value {
            None => self.null(),
            Some(t) => {
                let micros = t.timestamp() * 1_000_000
                    + (i64::from(t.timestamp_subsec_nanos()) + 500) / 1_000
                    - POSTGRES_EPOCH_MICROS;
                self.int8(micros)
            }
        }
    }

    /// A one-dimensional `text[]` field without NULLs.
    pub fn text_array(&mut self, items: &[String]) -> &mut Self {
        self.value(|b| {
            let dimensions: i32 = if items.is_empty() { 0 } else { 1 };
            for word in [dimensions, 0, TEXT_OID] {
                b.extend_from_slice(&word.to_be_bytes());
            }
            if !items.is_empty() {
                let len = i32::try_from(items.len()).expect("arrays fit in i32");
                // Length and lower bound of the one dimension.
                for word in [len, 1] {
                    b.extend_from_slice(&word.to_be_bytes());
                }
            }
            for item in items {
                let len = i32::try_from(item.len()).expect("a COPY value fits in 2 GiB");
                b.extend_from_slice(&len.to_be_bytes());
                b.extend_from_slice(item.as_bytes());
            }
        });
        self
    }
}

/// Run `{copy} FROM STDIN (FORMAT binary)` (`copy` is `COPY table (columns)`) with the
/// rows `next_row` writes: each call appends one row's fields in column order and
/// returns `true`, or returns `false` when there are no more. On a multi-threaded
/// runtime the rows are built on a thread of their own while the chunks already built
/// are sent, so building costs no time while the server is slower; on a current-thread
/// runtime they are built between sends. Returns the number of rows.
pub(crate) async fn copy_in<F>(conn: &mut PgConnection, copy: &str, mut next_row: F) -> Result<u64>
where
    F: FnMut(&mut CopyRows) -> bool + Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    let mut stream = conn
        .copy_in_raw(&format!("{copy} FROM STDIN (FORMAT binary)"))
        .await?;
    let mut rows = 0u64;
    let mut first = true;
    // The next chunk of rows (the first opens with the header, the last ends with the
    // trailer); `None` after the last.
    let mut done = false;
    let mut build_chunk = move |rows: &mut u64| {
        if done {
            return None;
        }
        let mut chunk = CopyRows::new();
        if std::mem::take(&mut first) {
            chunk.buf.extend_from_slice(HEADER);
        }
        while chunk.buf.len() < CHUNK_BYTES {
            chunk.begin_row();
            if !next_row(&mut chunk) {
                chunk.discard_row();
                chunk.buf.extend_from_slice(TRAILER);
                done = true;
                break;
            }
            chunk.end_row();
            *rows += 1;
        }
        Some(chunk)
    };
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        // The builder borrows the caller's rows, so it runs on a scoped thread; this
        // task's thread waits in `block_in_place`, driving the sends with `block_on`.
        tokio::task::block_in_place(|| {
            let (sender, mut receiver) = tokio::sync::mpsc::channel::<CopyRows>(CHUNKS_AHEAD);
            std::thread::scope(|scope| {
                let builder = scope.spawn(move || {
                    let mut built = 0u64;
                    while let Some(chunk) = build_chunk(&mut built) {
                        // The receiver is gone when a send failed: stop building.
                        if sender.blocking_send(chunk).is_err() {
                            break;
                        }
                    }
                    built
                });
                let sent = Handle::current().block_on(async {
                    while let Some(chunk) = receiver.recv().await {
                        stream.send(chunk.buf.as_slice()).await?;
                    }
                    Ok::<_, crate::Error>(())
                });
                drop(receiver);
                rows = builder.join().expect("building COPY rows does not panic");
                sent
            })
        })?;
    } else {
        while let Some(chunk) = build_chunk(&mut rows) {
            stream.send(chunk.buf.as_slice()).await?;
        }
    }
    stream.finish().await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fields_follow_the_binary_copy_format() {
        let mut rows = CopyRows::new();
        rows.begin_row();
        rows.text(Some("é"))
            .text(None)
            .int8(-2)
            .text_array(&["ab".into(), "c".into()])
            .text_array(&[])
            .jsonb(Some(&serde_json::json!({"a": 1})));
        rows.timestamptz(Some(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).unwrap()));
        rows.end_row();
        let be = |n: i32| n.to_be_bytes().to_vec();
        let expected: Vec<u8> = [
            7i16.to_be_bytes().to_vec(),
            be(2),
            "é".as_bytes().to_vec(),
            be(-1),
            be(8),
            (-2i64).to_be_bytes().to_vec(),
            be(31),
            [be(1), be(0), be(25), be(2), be(1), be(2), b"ab".to_vec()].concat(),
            [be(1), b"c".to_vec()].concat(),
            be(12),
            [be(0), be(0), be(25)].concat(),
            be(8),
            [vec![1], br#"{"a":1}"#.to_vec()].concat(),
            be(8),
            1_000_000i64.to_be_bytes().to_vec(),
        ]
        .concat();
        assert_eq!(rows.buf, expected);
    }

    #[test]
    fn timestamps_round_to_the_microsecond() {
        let micros = |nanos: u32| {
            let mut rows = CopyRows::new();
            rows.timestamptz(Some(
                Utc.timestamp_opt(946_684_800, nanos).single().unwrap(),
            ));
            i64::from_be_bytes(rows.buf[4..12].try_into().unwrap())
        };
        assert_eq!(
            [micros(0), micros(1_499), micros(1_500), micros(999_999_999)],
            [0, 1, 2, 1_000_000]
        );
    }
}
