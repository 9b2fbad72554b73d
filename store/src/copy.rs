//! Bulk writes through `COPY … FROM STDIN` (text format), with the rows built on a
//! thread of their own while the server stores the ones already sent.

use sqlx::PgConnection;

use crate::Result;

/// Rows are sent in chunks of about this size: the server stores one chunk while the
/// next is built.
const CHUNK_BYTES: usize = 1 << 20;

/// Built chunks waiting to be sent; more would only hold memory.
const CHUNKS_AHEAD: usize = 4;

/// COPY text format: tab-separated fields, one row per line.
pub struct CopyRows(String);

impl CopyRows {
    fn new() -> Self {
        CopyRows(String::with_capacity(CHUNK_BYTES + (64 << 10)))
    }

    fn separate(&mut self) {
        if !self.0.is_empty() && !self.0.ends_with('\n') {
            self.0.push('\t');
        }
    }

    /// Append `value` as the row's next field (`None`: NULL).
    pub fn field(&mut self, value: Option<&str>) -> &mut Self {
        self.separate();
        match value {
            None => self.0.push_str("\\N"),
            Some(v) => escape_into(&mut self.0, v),
        }
        self
    }

    /// Append `value`, formatted by `Display`, as the row's next field. For values whose
    /// text needs no escaping (numbers).
    pub fn number(&mut self, value: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write as _;
        self.separate();
        write!(self.0, "{value}").expect("writing to a String");
        self
    }

    /// Append a text array literal (`{"a","b"}`) as the row's next field.
    pub fn array(&mut self, items: &[String]) -> &mut Self {
        self.separate();
        self.0.push('{');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push('"');
            // Array quoting first (`\` and `"`), then COPY's escaping of that text.
            for ch in item.chars() {
                match ch {
                    '\\' => self.0.push_str("\\\\\\\\"),
                    '"' => self.0.push_str("\\\\\""),
                    c => escape_char(&mut self.0, c),
                }
            }
            self.0.push('"');
        }
        self.0.push('}');
        self
    }

    fn end_row(&mut self) {
        self.0.push('\n');
    }
}

fn escape_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c => out.push(c),
    }
}

/// COPY text escaping. Most values have nothing to escape and are copied whole.
fn escape_into(out: &mut String, value: &str) {
    let special = |b: &u8| matches!(b, b'\\' | b'\t' | b'\n' | b'\r');
    let mut rest = value;
    while let Some(at) = rest.bytes().position(|b| special(&b)) {
        out.push_str(&rest[..at]);
        escape_char(out, rest.as_bytes()[at] as char);
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Run `COPY {statement} FROM STDIN` with the rows `next_row` writes: each call appends
/// one row's fields and returns `true`, or returns `false` (having written nothing) when
/// there are no more. On a multi-threaded runtime the rows are built on a thread of
/// their own while the chunks already built are sent, so building costs no time when
/// the server is slower; on a current-thread runtime they are built between sends.
/// Returns the number of rows.
pub(crate) async fn copy_in<F>(
    conn: &mut PgConnection,
    statement: &str,
    mut next_row: F,
) -> Result<u64>
where
    F: FnMut(&mut CopyRows) -> bool + Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut rows = 0u64;
    // One chunk of rows; `None` when `next_row` has no more.
    let mut build_chunk = move |rows: &mut u64| {
        let mut chunk = CopyRows::new();
        while chunk.0.len() < CHUNK_BYTES && next_row(&mut chunk) {
            chunk.end_row();
            *rows += 1;
        }
        (!chunk.0.is_empty()).then_some(chunk)
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
                        copy.send(chunk.0.as_bytes()).await?;
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
            copy.send(chunk.0.as_bytes()).await?;
        }
    }
    copy.finish().await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        let mut rows = CopyRows::new();
        rows.field(Some("plain"))
            .field(Some("a\\b\tc\nd\re"))
            .field(None)
            .number(42)
            .array(&[
                "x".into(),
                "q\"uote".into(),
                "back\\slash".into(),
                "t\tab".into(),
            ])
            .array(&[]);
        rows.end_row();
        assert_eq!(
            rows.0,
            "plain\ta\\\\b\\tc\\nd\\re\t\\N\t42\t{\"x\",\"q\\\\\"uote\",\"back\\\\\\\\slash\",\"t\\tab\"}\t{}\n"
        );
    }
}
