//! What the dynamic loader reads from an ELF file: its program interpreter (`PT_INTERP`),
//! the libraries it needs (`DT_NEEDED`), where to look for them (`DT_RPATH`,
//! `DT_RUNPATH`) and its own name (`DT_SONAME`). 32- and 64-bit, either byte order.
//!
//! The file is untrusted: every offset and size read from it goes through checked
//! arithmetic and `get`, and a malformed file is `None`, never a panic.

use serde::{Deserialize, Serialize};

/// The dynamic-linking facts of one ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElfInfo {
    /// 32 or 64.
    pub bits: u8,
    /// `e_machine` (62 x86-64, 183 AArch64, …): the loader only takes libraries of the
    /// same class and machine.
    pub machine: u16,
    /// `PT_INTERP`, the program interpreter (`/lib64/ld-linux-x86-64.so.2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interp: Option<String>,
    /// `DT_NEEDED`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needed: Vec<String>,
    /// `DT_RPATH` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runpath: Vec<String>,
    /// `DT_SONAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soname: Option<String>,
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
/// No real object has more dynamic entries than this; a larger count is a bad file.
const MAX_DYNAMIC: usize = 1 << 16;
/// Nor more program headers.
const MAX_PHDRS: usize = 1 << 12;

/// Reads fixed-size fields at file offsets in the file's byte order.
struct Reader<'a> {
    bytes: &'a [u8],
    little: bool,
    wide: bool,
}

impl Reader<'_> {
    fn field(&self, at: usize, n: usize) -> Option<&[u8]> {
        self.bytes.get(at..at.checked_add(n)?)
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.field(at, 2)?.try_into().ok()?;
        Some(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.field(at, 4)?.try_into().ok()?;
        Some(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b: [u8; 8] = self.field(at, 8)?.try_into().ok()?;
        Some(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
    /// An address-sized field (`Elf32_Addr`/`Elf64_Addr`, `Off`, `Xword`).
    fn word(&self, at: usize) -> Option<u64> {
        if self.wide {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }
    /// A NUL-terminated string at `at`, at most `limit` bytes long.
    fn cstr(&self, at: usize, limit: usize) -> Option<String> {
        let end = at.checked_add(limit)?.min(self.bytes.len());
        let tail = self.bytes.get(at..end)?;
        let len = tail.iter().position(|b| *b == 0)?;
        Some(String::from_utf8_lossy(&tail[..len]).into_owned())
    }
}

/// A program header's fields the loader needs.
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn to_usize(v: u64) -> Option<usize> {
    usize::try_from(v).ok()
}

/// Parse the dynamic-linking facts of an ELF file; `None` when it is no ELF file or a
/// malformed one. A static executable comes back with no interpreter and nothing needed.
pub fn parse(bytes: &[u8]) -> Option<ElfInfo> {
    if bytes.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match *bytes.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match *bytes.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let r = Reader {
        bytes,
        little,
        wide,
    };
    let machine = r.u16(0x12)?;
    let (phoff, phentsize, phnum) = if wide {
        (r.u64(0x20)?, r.u16(0x36)?, r.u16(0x38)?)
    } else {
        (u64::from(r.u32(0x1c)?), r.u16(0x2a)?, r.u16(0x2c)?)
    };
    let (phoff, phentsize, phnum) = (to_usize(phoff)?, usize::from(phentsize), usize::from(phnum));
    if phnum > MAX_PHDRS || phentsize < if wide { 56 } else { 32 } {
        return None;
    }
    let mut segments = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let h = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let kind = r.u32(h)?;
        let segment = if wide {
            Segment {
                kind,
                offset: r.u64(h.checked_add(8)?)?,
                vaddr: r.u64(h.checked_add(16)?)?,
                filesz: r.u64(h.checked_add(32)?)?,
            }
        } else {
            Segment {
                kind,
                offset: u64::from(r.u32(h.checked_add(4)?)?),
                vaddr: u64::from(r.u32(h.checked_add(8)?)?),
                filesz: u64::from(r.u32(h.checked_add(16)?)?),
            }
        };
        segments.push(segment);
    }
    let mut info = ElfInfo {
        bits: if wide { 64 } else { 32 },
        machine,
        ..ElfInfo::default()
    };
    if let Some(s) = segments.iter().find(|s| s.kind == PT_INTERP) {
        let limit = to_usize(s.filesz)?.min(4096);
        info.interp = Some(r.cstr(to_usize(s.offset)?, limit)?).filter(|p| !p.is_empty());
    }
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Some(info);
    };
    // The dynamic entries: (tag, value) pairs of two words each.
    let entry = if wide { 16 } else { 8 };
    let start = to_usize(dynamic.offset)?;
    let count = (to_usize(dynamic.filesz)? / entry).min(MAX_DYNAMIC);
    let mut entries = Vec::new();
    for i in 0..count {
        let at = start.checked_add(i.checked_mul(entry)?)?;
        let tag = r.word(at)?;
        if tag == DT_NULL {
            break;
        }
        let value = r.word(at.checked_add(entry / 2)?)?;
        entries.push((tag, value));
    }
    let find = |tag: u64| entries.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v);
    let strtab_addr = find(DT_STRTAB)?;
    // DT_STRTAB is a virtual address: map it to a file offset through the PT_LOAD
    // segment that holds it.
    let strtab = segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find(|s| {
            strtab_addr >= s.vaddr
                && s.vaddr
                    .checked_add(s.filesz)
                    .is_some_and(|end| strtab_addr < end)
        })
        .and_then(|s| s.offset.checked_add(strtab_addr - s.vaddr))
        .and_then(to_usize)?;
    let strsz = find(DT_STRSZ)
        .and_then(to_usize)
        .unwrap_or(usize::MAX)
        .min(bytes.len().saturating_sub(strtab));
    let string = |offset: u64| -> Option<String> {
        let offset = to_usize(offset)?;
        if offset >= strsz {
            return None;
        }
        r.cstr(strtab.checked_add(offset)?, (strsz - offset).min(4096))
    };
    let split = |value: String| -> Vec<String> {
        value
            .split(':')
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect()
    };
    for (tag, value) in &entries {
        match *tag {
            DT_NEEDED => info.needed.extend(string(*value)),
            DT_SONAME => info.soname = string(*value),
            DT_RPATH => info
                .rpath
                .extend(string(*value).map(split).unwrap_or_default()),
            DT_RUNPATH => info
                .runpath
                .extend(string(*value).map(split).unwrap_or_default()),
            _ => {}
        }
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF: one PT_LOAD at vaddr 0x400000 covering the
    /// file, a PT_INTERP and a PT_DYNAMIC with NEEDED ×2, RUNPATH and SONAME.
    fn sample(little: bool) -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        let put16 = |b: &mut Vec<u8>, at: usize, v: u16| {
            let x = if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            b[at..at + 2].copy_from_slice(&x)
        };
        let put32 = |b: &mut Vec<u8>, at: usize, v: u32| {
            let x = if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            b[at..at + 4].copy_from_slice(&x)
        };
        let put64 = |b: &mut Vec<u8>, at: usize, v: u64| {
            let x = if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            b[at..at + 8].copy_from_slice(&x)
        };
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = if little { 1 } else { 2 };
        put16(&mut b, 0x12, 62);
        put64(&mut b, 0x20, 0x40);
        put16(&mut b, 0x36, 56);
        put16(&mut b, 0x38, 3);
        // Strings at 0x300.
        let strings = b"\0libtinfo.so.6\0libc.so.6\0$ORIGIN/../lib:/opt/x\0libbash.so\0";
        b[0x300..0x300 + strings.len()].copy_from_slice(strings);
        let interp = b"/lib64/ld-linux-x86-64.so.2\0";
        b[0x200..0x200 + interp.len()].copy_from_slice(interp);
        // PT_LOAD
        put32(&mut b, 0x40, PT_LOAD);
        put64(&mut b, 0x40 + 8, 0);
        put64(&mut b, 0x40 + 16, 0x400000);
        put64(&mut b, 0x40 + 32, 0x400);
        // PT_INTERP
        put32(&mut b, 0x78, PT_INTERP);
        put64(&mut b, 0x78 + 8, 0x200);
        put64(&mut b, 0x78 + 32, interp.len() as u64);
        // PT_DYNAMIC at 0x100
        put32(&mut b, 0xb0, PT_DYNAMIC);
        put64(&mut b, 0xb0 + 8, 0x100);
        put64(&mut b, 0xb0 + 32, 7 * 16);
        let dyns: [(u64, u64); 7] = [
            (DT_NEEDED, 1),
            (DT_NEEDED, 15),
            (DT_RUNPATH, 25),
            (DT_SONAME, 47),
            (DT_STRTAB, 0x400300),
            (DT_STRSZ, strings.len() as u64),
            (DT_NULL, 0),
        ];
        for (i, (t, v)) in dyns.iter().enumerate() {
            put64(&mut b, 0x100 + i * 16, *t);
            put64(&mut b, 0x100 + i * 16 + 8, *v);
        }
        b
    }

    #[test]
    fn reads_interpreter_needed_runpath_and_soname_in_both_byte_orders() {
        for little in [true, false] {
            let info = parse(&sample(little)).expect("parses");
            assert_eq!(info.bits, 64);
            assert_eq!(info.machine, 62);
            assert_eq!(info.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
            assert_eq!(info.needed, vec!["libtinfo.so.6", "libc.so.6"]);
            assert_eq!(info.runpath, vec!["$ORIGIN/../lib", "/opt/x"]);
            assert!(info.rpath.is_empty());
            assert_eq!(info.soname.as_deref(), Some("libbash.so"));
        }
    }

    #[test]
    fn malformed_files_are_none_not_panics() {
        let good = sample(true);
        assert!(parse(b"\x7fELF").is_none());
        assert!(parse(b"#!/bin/sh\n").is_none());
        // Every truncation and every single-byte corruption: no panic.
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        for at in 0..0x140 {
            for v in [0u8, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                let _ = parse(&bad);
            }
        }
        // A string table pointing outside every segment: nothing needed, no panic.
        let mut bad = good.clone();
        bad[0x100 + 4 * 16 + 8..0x100 + 4 * 16 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&bad).is_none());
    }
}
