//! The RPM database of Red Hat-family and SUSE images (`rpmdb.sqlite`, RHEL/UBI 9, Fedora,
//! Rocky, Alma; BerkeleyDB `Packages`, RHEL 7–8; ndb `Packages.db`, SLES/openSUSE 15): for
//! SQLite a read-only walk of the SQLite table `Packages` and a parse of each
//! stored RPM header for name, epoch, version, release and arch. No SQLite library: the
//! file format is stable and documented (sqlite.org/fileformat2.html), and only one table
//! is read. Anything malformed stops with an error, never a panic.
//!
//! All three readers cap the record bytes they produce at the size of the file itself: in a
//! valid database every payload byte is stored once, so more means overflow chains shared
//! between records (a small file expanding to gigabytes), refused with an error.

use super::analyze::FoundPackage;

const HEADER: &[u8; 16] = b"SQLite format 3\0";

struct Db<'a> {
    bytes: &'a [u8],
    /// Record bytes that may still be produced (starts at the file's size).
    budget: std::cell::Cell<usize>,
    page_size: usize,
    usable: usize,
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// SQLite's big-endian varint (1–9 bytes); returns (value, length).
fn varint(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..9 {
        let byte = *b.get(at + i)?;
        if i == 8 {
            return Some(((value << 8) | u64::from(byte), 9));
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

impl<'a> Db<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self, String> {
        if bytes.get(..16) != Some(HEADER) {
            return Err("not an SQLite database".into());
        }
        let page_size = match be16(bytes, 16).ok_or("truncated header")? {
            1 => 65_536,
            n if n >= 512 && n.is_power_of_two() => n,
            n => return Err(format!("page size {n} is not valid")),
        };
        let reserved = *bytes.get(20).ok_or("truncated header")? as usize;
        // SQLite's own minimum: below it the payload formulas underflow.
        let usable = page_size - reserved;
        if usable < 480 {
            return Err(format!("usable page size {usable} is below 480"));
        }
        Ok(Db {
            bytes,
            budget: std::cell::Cell::new(bytes.len()),
            page_size,
            usable,
        })
    }

    fn page(&self, number: u32) -> Result<&'a [u8], String> {
        let start = (number as usize)
            .checked_sub(1)
            .ok_or("page 0 referenced")?
            .checked_mul(self.page_size)
            .ok_or("page number out of range")?;
        self.bytes
            .get(
                start
                    ..start
                        .checked_add(self.page_size)
                        .ok_or("page number out of range")?,
            )
            .ok_or_else(|| format!("page {number} is past the end of the file"))
    }

    /// The payload of a table-leaf cell at `at` in `page`, following overflow pages.
    fn payload(&self, page: &[u8], at: usize) -> Result<Vec<u8>, String> {
        let (length, n) = varint(page, at).ok_or("truncated cell")?;
        let (_, m) = varint(page, at + n).ok_or("truncated cell")?;
        let start = at + n + m;
        let length = usize::try_from(length).map_err(|_| "cell too large")?;
        let remaining = self.budget.get();
        if length > remaining {
            return Err(format!(
                "records add up to more than the file's {} bytes (shared overflow pages); refused",
                self.bytes.len()
            ));
        }
        self.budget.set(remaining - length);
        let u = self.usable;
        let max_local = u - 35;
        let local = if length <= max_local {
            length
        } else {
            let min_local = (u - 12) * 32 / 255 - 23;
            let k = min_local + (length - min_local) % (u - 4);
            if k <= max_local { k } else { min_local }
        };
        let mut out = page
            .get(
                start
                    ..start
                        .checked_add(local)
                        .ok_or("cell payload past the page")?,
            )
            .ok_or("cell payload past the page")?
            .to_vec();
        if local < length {
            let mut next = be32(page, start + local).ok_or("truncated overflow pointer")?;
            let mut guard = 0;
            while out.len() < length {
                guard += 1;
                if next == 0 || guard > self.bytes.len() / self.page_size + 1 {
                    return Err("broken overflow chain".into());
                }
                let overflow = self.page(next)?;
                next = be32(overflow, 0).ok_or("truncated overflow page")?;
                let take = (length - out.len()).min(u - 4);
                out.extend_from_slice(overflow.get(4..4 + take).ok_or("short overflow page")?);
            }
        }
        Ok(out)
    }

    /// Every record of the table B-tree rooted at `root`, in rowid order.
    fn table(&self, root: u32) -> Result<Vec<Vec<u8>>, String> {
        let mut records = Vec::new();
        let mut stack = vec![root];
        let mut visited = 0usize;
        while let Some(number) = stack.pop() {
            visited += 1;
            if visited > self.bytes.len() / self.page_size + 1 {
                return Err("B-tree loops".into());
            }
            let page = self.page(number)?;
            let header = if number == 1 { 100 } else { 0 };
            let kind = *page.get(header).ok_or("empty page")?;
            let cells = be16(page, header + 3).ok_or("truncated page header")?;
            match kind {
                0x0d => {
                    for i in 0..cells {
                        let at = be16(page, header + 8 + 2 * i).ok_or("truncated cell pointers")?;
                        records.push(self.payload(page, at)?);
                    }
                }
                0x05 => {
                    let right = be32(page, header + 8).ok_or("truncated page header")?;
                    // Pushed in reverse so children are visited left to right.
                    stack.push(right);
                    for i in (0..cells).rev() {
                        let at =
                            be16(page, header + 12 + 2 * i).ok_or("truncated cell pointers")?;
                        stack.push(be32(page, at).ok_or("truncated interior cell")?);
                    }
                }
                other => {
                    return Err(format!(
                        "page {number} has type {other:#x}, not a table page"
                    ));
                }
            }
        }
        Ok(records)
    }
}

/// A column value of a record.
#[derive(Debug, PartialEq)]
enum Value<'a> {
    Null,
    Int(i64),
    Bytes(&'a [u8]),
}

fn columns(record: &[u8]) -> Result<Vec<Value<'_>>, String> {
    let (header_len, n) = varint(record, 0).ok_or("truncated record")?;
    let mut at = n;
    let mut body = header_len as usize;
    let mut out = Vec::new();
    while at < header_len as usize {
        let (serial, n) = varint(record, at).ok_or("truncated record header")?;
        at += n;
        let (value, size) = match serial {
            0 => (Value::Null, 0),
            1..=6 => {
                let size = [0, 1, 2, 3, 4, 6, 8][serial as usize];
                let bytes = field(record, body, size).ok_or("truncated integer")?;
                let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
                for b in bytes {
                    v = (v << 8) | i64::from(*b);
                }
                (Value::Int(v), size)
            }
            7 => (Value::Null, 8),
            8 => (Value::Int(0), 0),
            9 => (Value::Int(1), 0),
            n if n >= 12 => {
                let size = ((n - 12) / 2) as usize;
                (
                    Value::Bytes(field(record, body, size).ok_or("truncated blob")?),
                    size,
                )
            }
            _ => return Err("reserved serial type".into()),
        };
        body = body.checked_add(size).ok_or("record longer than memory")?;
        out.push(value);
    }
    Ok(out)
}

/// `size` bytes of `record` from `start`, if they are all there (a hostile header can
/// declare offsets and sizes anywhere up to 2^64).
fn field(record: &[u8], start: usize, size: usize) -> Option<&[u8]> {
    record.get(start..start.checked_add(size)?)
}

/// An installed RPM and the files it owns (absolute paths, as rpm records them).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RpmPackage {
    /// The package.
    pub package: FoundPackage,
    /// Its files: `DIRNAMES[DIRINDEXES[i]] + BASENAMES[i]`, or the legacy `OLDFILENAMES`.
    pub files: Vec<String>,
}

/// `count` NUL-terminated strings from `data` at `offset` (a `STRING_ARRAY` entry).
fn string_array(data: &[u8], offset: usize, count: usize) -> Result<Vec<String>, String> {
    // Every string takes at least its NUL: a count past the data is a lie, not a big array.
    if count > data.len() {
        return Err("RPM string array longer than the header's data".into());
    }
    let mut rest = data.get(offset..).ok_or("RPM string array past the data")?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or("unterminated string in an RPM string array")?;
        out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = &rest[end + 1..];
    }
    Ok(out)
}

/// `count` big-endian 32-bit integers from `data` at `offset` (an `INT32` entry).
fn int32_array(data: &[u8], offset: usize, count: usize) -> Result<Vec<u32>, String> {
    let end = count
        .checked_mul(4)
        .and_then(|n| n.checked_add(offset))
        .ok_or("RPM integer array too large")?;
    let bytes = data
        .get(offset..end)
        .ok_or("RPM integer array past the data")?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Name, epoch, version, release, arch and source RPM from one RPM header blob (as rpm stores it in
/// its database: index count, data length, index entries, data).
pub fn parse_header(blob: &[u8]) -> Result<Option<FoundPackage>, String> {
    Ok(parse_header_with_files(blob)?.map(|p| p.package))
}

/// [`parse_header`] and the package's file list (for the Usage view: which package owns
/// a file the entrypoint loads).
pub fn parse_header_with_files(blob: &[u8]) -> Result<Option<RpmPackage>, String> {
    let count = be32(blob, 0).ok_or("truncated RPM header")? as usize;
    let data_len = be32(blob, 4).ok_or("truncated RPM header")? as usize;
    let data_start = 8 + count.checked_mul(16).ok_or("RPM header too large")?;
    let data = blob
        .get(data_start..data_start + data_len)
        .ok_or("RPM header data past the blob")?;
    let (mut name, mut version, mut release, mut arch, mut epoch) = (None, None, None, None, None);
    let mut source_rpm = None;
    let mut license = None;
    let mut vendor = None;
    let (mut dir_indexes, mut base_names, mut dir_names, mut old_file_names) =
        (None, None, None, None);
    for i in 0..count {
        let entry = 8 + 16 * i;
        let tag = be32(blob, entry).ok_or("truncated index")?;
        let kind = be32(blob, entry + 4).ok_or("truncated index")?;
        let offset = be32(blob, entry + 8).ok_or("truncated index")? as usize;
        let items = be32(blob, entry + 12).ok_or("truncated index")? as usize;
        let string = || -> Option<String> {
            let rest = data.get(offset..)?;
            let end = rest.iter().position(|b| *b == 0)?;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        match (tag, kind) {
            (1000, 6) => name = string(),
            (1001, 6) => version = string(),
            (1002, 6) => release = string(),
            (1022, 6) => arch = string(),
            (1044, 6) => source_rpm = string(),
            // LICENSE: an SPDX expression on current Fedora and its descendants, the
            // distribution's own short names on older ones; kept as given.
            (1014, 6 | 9) => license = string(),
            (1011, 6 | 9) => vendor = string(),
            (1003, 4) => epoch = be32(data, offset),
            (1116, 4) => dir_indexes = Some(int32_array(data, offset, items)?),
            (1117, 8) => base_names = Some(string_array(data, offset, items)?),
            (1118, 8) => dir_names = Some(string_array(data, offset, items)?),
            (1027, 8) => old_file_names = Some(string_array(data, offset, items)?),
            _ => {}
        }
    }
    let files = match (base_names, dir_indexes, dir_names, old_file_names) {
        (Some(bases), Some(indexes), Some(dirs), _) => {
            if bases.len() != indexes.len() {
                return Err("RPM header with BASENAMES and DIRINDEXES of different lengths".into());
            }
            bases
                .iter()
                .zip(&indexes)
                .map(|(base, &i)| {
                    dirs.get(i as usize)
                        .map(|dir| format!("{dir}{base}"))
                        .ok_or("RPM DIRINDEXES entry past DIRNAMES")
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        (_, _, _, Some(old)) => old,
        _ => Vec::new(),
    };
    let (Some(name), Some(version)) = (name, version) else {
        return Err("RPM header without name or version".into());
    };
    // Imported signing keys are stored as pseudo-packages.
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    let mut evr = match epoch {
        Some(e) => format!("{e}:{version}"),
        None => version,
    };
    if let Some(release) = release {
        evr = format!("{evr}-{release}");
    }
    let mut found = FoundPackage::new("rpm", &arch.unwrap_or_default(), &name, &evr);
    found.license = license
        .map(|l| l.trim().chars().take(4096).collect())
        .unwrap_or_default();
    found.vendor = vendor
        .map(|v| v.trim().chars().take(256).collect())
        .unwrap_or_default();
    let package_files = files;
    // The source RPM shares the binary's epoch (one spec file builds both).
    if let Some((src_name, src_version)) = source_rpm.as_deref().and_then(split_source_rpm) {
        let src_evr = match epoch {
            Some(e) => format!("{e}:{src_version}"),
            None => src_version.to_string(),
        };
        if src_name != found.name {
            found.source = src_name.to_string();
        }
        if src_evr != found.version {
            found.source_version = src_evr;
        }
    }
    Ok(Some(RpmPackage {
        package: found,
        files: package_files,
    }))
}

/// `openssl-3.0.7-27.el9.src.rpm` → (`openssl`, `3.0.7-27.el9`): the name is everything
/// before the last two dashes.
pub fn split_source_rpm(file: &str) -> Option<(&str, &str)> {
    let stem = file
        .strip_suffix(".src.rpm")
        .or_else(|| file.strip_suffix(".nosrc.rpm"))?;
    let (rest, _release) = stem.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    if name.is_empty() {
        return None;
    }
    Some((name, &stem[name.len() + 1..]))
}

/// Every installed package in an `rpmdb.sqlite`.
pub fn parse_rpmdb_sqlite(bytes: &[u8]) -> Result<Vec<FoundPackage>, String> {
    Ok(packages_of(read_rpmdb_sqlite(bytes)?))
}

fn packages_of(read: Vec<RpmPackage>) -> Vec<FoundPackage> {
    let mut found: Vec<FoundPackage> = read.into_iter().map(|p| p.package).collect();
    found.sort();
    found
}

/// Every installed package in an `rpmdb.sqlite`, with its files.
pub fn read_rpmdb_sqlite(bytes: &[u8]) -> Result<Vec<RpmPackage>, String> {
    let db = Db::open(bytes)?;
    let mut root = None;
    for record in db.table(1)? {
        let cols = columns(&record)?;
        if let [
            Value::Bytes(b"table"),
            Value::Bytes(b"Packages"),
            _,
            Value::Int(page),
            ..,
        ] = cols.as_slice()
        {
            root = Some(*page as u32);
        }
    }
    let root = root.ok_or("no Packages table")?;
    let mut found = Vec::new();
    for record in db.table(root)? {
        let cols = columns(&record)?;
        let Some(Value::Bytes(blob)) = cols.get(1) else {
            return Err("a Packages row without a header blob".into());
        };
        if let Some(package) = parse_header_with_files(blob)? {
            found.push(package);
        }
    }
    found.sort();
    Ok(found)
}

/// Every installed package in a BerkeleyDB hash `Packages` file (RHEL/CentOS 7 and 8,
/// UBI 8, older Fedora and SUSE): each hash page's key/data pairs, a data item either on
/// the page or in a chain of overflow pages, each data an RPM header. Either byte order.
pub fn parse_rpmdb_bdb(bytes: &[u8]) -> Result<Vec<FoundPackage>, String> {
    Ok(packages_of(read_rpmdb_bdb(bytes)?))
}

/// Every installed package in a BerkeleyDB `Packages` file, with its files.
pub fn read_rpmdb_bdb(bytes: &[u8]) -> Result<Vec<RpmPackage>, String> {
    const P_OVERHEAD: usize = 26;
    let magic = bytes.get(12..16).ok_or("not a BerkeleyDB file")?;
    let little = match magic {
        [0x61, 0x15, 0x06, 0x00] => true,
        [0x00, 0x06, 0x15, 0x61] => false,
        _ => return Err("not a BerkeleyDB hash database".into()),
    };
    let u16_at = |b: &[u8], at: usize| -> Option<usize> {
        let v: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        } as usize)
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        let v: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        })
    };
    let page_size = u32_at(bytes, 20).ok_or("truncated metadata page")? as usize;
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("page size {page_size} is not valid"));
    }
    let pages = bytes.len() / page_size;
    let page =
        |n: usize| bytes.get(n.checked_mul(page_size)?..n.checked_add(1)?.checked_mul(page_size)?);
    let budget = std::cell::Cell::new(bytes.len());
    let overflow = |first: u32, length: usize| -> Result<Vec<u8>, String> {
        let remaining = budget.get();
        if length > remaining {
            return Err(format!(
                "records add up to more than the file's {} bytes (shared overflow pages); refused",
                bytes.len()
            ));
        }
        budget.set(remaining - length);
        let mut out = Vec::with_capacity(length);
        let mut next = first as usize;
        let mut guard = 0;
        while out.len() < length {
            guard += 1;
            if next == 0 || guard > pages {
                return Err("broken overflow chain".into());
            }
            let p = page(next).ok_or("overflow page past the end of the file")?;
            if p[25] != 7 {
                return Err(format!("page {next} is not an overflow page"));
            }
            let used = u16_at(p, 22).ok_or("truncated overflow page")?;
            out.extend_from_slice(
                p.get(P_OVERHEAD..P_OVERHEAD + used)
                    .ok_or("short overflow page")?,
            );
            next = u32_at(p, 16).ok_or("truncated overflow page")? as usize;
        }
        out.truncate(length);
        Ok(out)
    };
    let mut found = Vec::new();
    for n in 1..pages {
        let p = page(n).ok_or("truncated page")?;
        // 13: hash page; 2: hash page of older, unsorted databases.
        if p[25] != 13 && p[25] != 2 {
            continue;
        }
        let entries = u16_at(p, 20).ok_or("truncated page header")?;
        let offsets: Vec<usize> = (0..entries)
            .map(|i| u16_at(p, P_OVERHEAD + 2 * i).ok_or("truncated item index"))
            .collect::<Result<_, _>>()?;
        // Items are pairs: key, data. An on-page item ends where the previous one begins.
        for i in (1..entries).step_by(2) {
            let (key_at, data_at) = (offsets[i - 1], offsets[i]);
            let key_end = if i == 1 { page_size } else { offsets[i - 2] };
            let key = p.get(key_at + 1..key_end).ok_or("key past the page")?;
            if p.get(key_at) == Some(&1) && key.iter().all(|b| *b == 0) {
                // Record 0 holds rpm's next instance number, not a header.
                continue;
            }
            let blob = match p.get(data_at) {
                Some(1) => p
                    .get(data_at + 1..key_at)
                    .ok_or("data past the page")?
                    .to_vec(),
                Some(3) => {
                    let first = u32_at(p, data_at + 4).ok_or("truncated off-page item")?;
                    let length = u32_at(p, data_at + 8).ok_or("truncated off-page item")? as usize;
                    overflow(first, length)?
                }
                other => return Err(format!("unexpected hash item type {other:?}")),
            };
            if let Some(package) = parse_header_with_files(&blob)? {
                found.push(package);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Every installed package in an ndb `Packages.db` (SUSE: SLES and openSUSE 15.3 and
/// later, SLE BCI images), with its files. The format is rpm's own (`lib/backend/ndb`),
/// little-endian: a header (`RpmP`, version 0, generation, the number of 4 KiB slot pages)
/// in the first 32 bytes, then 16-byte slots (`Slot`, package index, block offset, block
/// count) filling the slot pages, each used slot pointing at a blob in 16-byte blocks:
/// `BlbS`, package index, generation, length, the RPM header, padding, then a trailer
/// ending the slot's blocks (Adler-32 of all before it, length, `BlbE`), which is checked.
pub fn read_rpmdb_ndb(bytes: &[u8]) -> Result<Vec<RpmPackage>, String> {
    const SLOT_PAGE: usize = 4096;
    const BLOCK: usize = 16;
    const TRAILER: usize = 12;
    let le32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    if bytes.get(..4) != Some(b"RpmP") {
        return Err("not an ndb Packages.db (no RpmP header)".into());
    }
    let version = le32(4).ok_or("truncated ndb header")?;
    if version != 0 {
        return Err(format!("ndb version {version} is not known"));
    }
    let slot_pages = le32(12).ok_or("truncated ndb header")? as usize;
    let slots_end = slot_pages
        .checked_mul(SLOT_PAGE)
        .filter(|end| *end <= bytes.len() && *end > 0)
        .ok_or_else(|| format!("{slot_pages} slot pages do not fit the file"))?;
    let mut found = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut budget = bytes.len();
    // The header takes the first two slots' room.
    for at in (2 * BLOCK..slots_end).step_by(BLOCK) {
        if bytes.get(at..at + 4) != Some(b"Slot") {
            return Err(format!("slot at byte {at} has no Slot magic"));
        }
        let index = le32(at + 4).ok_or("truncated slot")?;
        if index == 0 {
            continue; // free
        }
        if !seen.insert(index) {
            return Err(format!("package index {index} has two slots"));
        }
        let offset = (le32(at + 8).ok_or("truncated slot")? as usize)
            .checked_mul(BLOCK)
            .ok_or("slot offset overflows")?;
        let blocks = (le32(at + 12).ok_or("truncated slot")? as usize)
            .checked_mul(BLOCK)
            .ok_or("slot size overflows")?;
        let end = offset
            .checked_add(blocks)
            .filter(|end| offset >= slots_end && *end <= bytes.len())
            .ok_or_else(|| format!("package {index}'s blob lies outside the file"))?;
        let blob = &bytes[offset..end];
        if blob.get(..4) != Some(b"BlbS") || le32(offset + 4) != Some(index) {
            return Err(format!(
                "package {index}'s blob has no BlbS header of its own"
            ));
        }
        let length = le32(offset + 12).ok_or("truncated blob header")? as usize;
        let header = length
            .checked_add(BLOCK + TRAILER)
            .filter(|needed| *needed <= blob.len())
            .and_then(|_| blob.get(BLOCK..BLOCK + length))
            .ok_or_else(|| format!("package {index}'s blob is longer than its slot"))?;
        // The trailer ends the slot's blocks: Adler-32 of everything before it, the length
        // again, `BlbE` — as rpm checks it before trusting a blob.
        let (body, trailer) = blob.split_at(blob.len() - TRAILER);
        let stored = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
        if &trailer[8..] != b"BlbE"
            || trailer[4..8] != (length as u32).to_le_bytes()
            || adler2::adler32_slice(body) != stored
        {
            return Err(format!(
                "package {index}'s blob fails its checksum (a damaged Packages.db)"
            ));
        }
        budget = budget.checked_sub(length).ok_or_else(|| {
            format!(
                "blobs add up to more than the file's {} bytes (overlapping slots); refused",
                bytes.len()
            )
        })?;
        if let Some(package) = parse_header_with_files(header)? {
            found.push(package);
        }
    }
    found.sort();
    Ok(found)
}

/// Every installed package in an ndb `Packages.db`.
pub fn parse_rpmdb_ndb(bytes: &[u8]) -> Result<Vec<FoundPackage>, String> {
    Ok(packages_of(read_rpmdb_ndb(bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: a record whose header puts the body near the top of the address
    /// space and declares a blob of 2^63 bytes made `body + size` overflow.
    #[test]
    fn a_record_declaring_sizes_past_the_address_space_is_refused() {
        let mut record = vec![0xff; 8];
        record.push(0xfe); // header length 2^64 - 2
        record.extend([0xff; 8]);
        record.push(0x0c); // a blob of about 2^63 bytes
        let error = columns(&record).expect_err("refused");
        assert!(
            error.contains("truncated") || error.contains("longer than memory"),
            "{error}"
        );
    }
}
