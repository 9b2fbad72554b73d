//! Version ordering per ecosystem, as each package manager orders its own versions, and
//! OSV range semantics on top: dpkg (Debian, Ubuntu), apk (Alpine), PEP 440 (PyPI),
//! Maven, RPM, RubyGems, Composer (Packagist), and semantic versions (npm, crates.io, Go,
//! NuGet and the rest).

use std::cmp::Ordering;

/// Which ordering an ecosystem uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `[epoch:]upstream[-revision]`, Debian policy §5.6.12.
    Dpkg,
    /// Alpine's apk versions (`1.2.3_rc1-r0`).
    Apk,
    /// PEP 440.
    Pep440,
    /// Maven's ComparableVersion.
    Maven,
    /// Semantic versions (and dotted numeric versions of any length).
    Semver,
    /// RPM's `[epoch:]version[-release]` with `rpmvercmp` (`~` and `^` included).
    Rpm,
    /// RubyGems' `Gem::Version`.
    Gem,
    /// Composer's normalized versions under PHP's `version_compare` (Packagist).
    Composer,
    /// NuGet's: semantic versions with up to four numbers, pre-release labels compared
    /// without regard to case (`1.0.0-Beta` = `1.0.0-beta`).
    NuGet,
}

impl Scheme {
    /// The scheme of an OSV ecosystem (`Debian:12`, `PyPI`, …) or package URL type
    /// (`deb`, `pypi`, …).
    pub fn of(ecosystem: &str) -> Scheme {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base {
            "Debian" | "Ubuntu" | "deb" => Scheme::Dpkg,
            "Alpine" | "Wolfi" | "Chainguard" | "apk" => Scheme::Apk,
            "PyPI" | "pypi" => Scheme::Pep440,
            "Maven" | "maven" => Scheme::Maven,
            "Red Hat" | "Rocky Linux" | "AlmaLinux" | "openSUSE" | "SUSE" | "Mageia"
            | "openEuler" | "rpm" => Scheme::Rpm,
            "RubyGems" | "gem" => Scheme::Gem,
            "Packagist" | "composer" => Scheme::Composer,
            "NuGet" | "nuget" => Scheme::NuGet,
            _ => Scheme::Semver,
        }
    }

    /// Compare two versions.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Scheme::Dpkg => dpkg_compare(a, b),
            Scheme::Apk => apk_compare(a, b),
            Scheme::Pep440 => pep440_compare(a, b),
            Scheme::Maven => maven_compare(a, b),
            Scheme::Semver => semver_compare(a, b),
            Scheme::Rpm => rpm_compare(a, b),
            Scheme::Gem => gem_compare(a, b),
            Scheme::Composer => composer_compare(a, b),
            Scheme::NuGet => semver_compare(&a.to_ascii_lowercase(), &b.to_ascii_lowercase()),
        }
    }
}

// ---- rpm ----------------------------------------------------------------------------

/// RPM's `rpmvercmp`: alternating numeric and alphabetic segments, other characters only
/// separate; `~` sorts before everything (even the end), `^` after the end but before
/// anything else; a numeric segment is newer than an alphabetic one.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut one, mut two) = (a.as_bytes(), b.as_bytes());
    let separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while one.first().is_some_and(|c| separator(*c)) {
            one = &one[1..];
        }
        while two.first().is_some_and(|c| separator(*c)) {
            two = &two[1..];
        }
        if one.first() == Some(&b'~') || two.first() == Some(&b'~') {
            if one.first() != Some(&b'~') {
                return Ordering::Greater;
            }
            if two.first() != Some(&b'~') {
                return Ordering::Less;
            }
            one = &one[1..];
            two = &two[1..];
            continue;
        }
        if one.first() == Some(&b'^') || two.first() == Some(&b'^') {
            if one.is_empty() {
                return Ordering::Less;
            }
            if two.is_empty() {
                return Ordering::Greater;
            }
            if one.first() != Some(&b'^') {
                return Ordering::Greater;
            }
            if two.first() != Some(&b'^') {
                return Ordering::Less;
            }
            one = &one[1..];
            two = &two[1..];
            continue;
        }
        if one.is_empty() || two.is_empty() {
            break;
        }
        let numeric = one[0].is_ascii_digit();
        let take = |s: &[u8]| {
            s.iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (n1, n2) = (take(one), take(two));
        let (seg1, seg2) = (&one[..n1], &two[..n2]);
        if seg2.is_empty() {
            // Different segment types: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let order = if numeric {
            let strip = |s: &[u8]| {
                let zeros = s.iter().take_while(|c| **c == b'0').count();
                s[zeros..].to_vec()
            };
            let (x, y) = (strip(seg1), strip(seg2));
            x.len().cmp(&y.len()).then_with(|| x.cmp(&y))
        } else {
            seg1.cmp(seg2)
        };
        if order != Ordering::Equal {
            return order;
        }
        one = &one[n1..];
        two = &two[n2..];
    }
    match (one.is_empty(), two.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

fn rpm_split(v: &str) -> (u64, &str, Option<&str>) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.bytes().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), rest),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((version, release)) => (epoch, version, Some(release)),
        None => (epoch, rest, None),
    }
}

/// Compare two `[epoch:]version[-release]` strings as rpm orders installed packages. A
/// missing release sorts before every release: rpm's dependency matching lets it match any
/// release, but that is not an order (1.0 would equal both 1.0-1 and 1.0-2, found by
/// fuzzing the comparator for transitivity), and ranges need one.
pub fn rpm_compare(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = rpm_split(a.trim());
    let (eb, vb, rb) = rpm_split(b.trim());
    ea.cmp(&eb)
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| match (ra, rb) {
            (Some(x), Some(y)) => rpmvercmp(x, y),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

// ---- dpkg ---------------------------------------------------------------------------

fn dpkg_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternate non-digit runs (compared with `~` before everything,
/// even the end, and letters before other characters) and digit runs (numerically).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = dpkg_order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = dpkg_order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == 0 {
                first_diff = i32::from(a[i]) - i32::from(b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

fn dpkg_split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// Debian version comparison.
pub fn dpkg_compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = dpkg_split(a.trim());
    let (eb, ub, rb) = dpkg_split(b.trim());
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

// ---- apk ----------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
enum ApkToken {
    // Order matters: a pre-release suffix sorts before the end of the version.
    PreSuffix(u8, u64),
    End,
    PostSuffix(u8, u64),
    Letter(u8),
    Number(u64),
}

fn apk_tokens(v: &str) -> (Vec<ApkToken>, u64) {
    let (body, revision) = match v.rsplit_once("-r") {
        Some((b, r)) if r.chars().all(|c| c.is_ascii_digit()) && !r.is_empty() => {
            (b, r.parse().unwrap_or(0))
        }
        _ => (v, 0),
    };
    let mut tokens = Vec::new();
    let (main, suffixes) = body.split_once('_').map_or((body, ""), |(m, s)| (m, s));
    for part in main.split('.') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            tokens.push(ApkToken::Number(digits.parse().unwrap_or(u64::MAX)));
        }
        for c in part[digits.len()..].bytes() {
            tokens.push(ApkToken::Letter(c));
        }
    }
    if !suffixes.is_empty() {
        for suffix in suffixes.split('_') {
            let name: String = suffix
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let n = suffix[name.len()..].parse().unwrap_or(0);
            let token = match name.as_str() {
                "alpha" => ApkToken::PreSuffix(0, n),
                "beta" => ApkToken::PreSuffix(1, n),
                "pre" => ApkToken::PreSuffix(2, n),
                "rc" => ApkToken::PreSuffix(3, n),
                "cvs" => ApkToken::PostSuffix(0, n),
                "svn" => ApkToken::PostSuffix(1, n),
                "git" => ApkToken::PostSuffix(2, n),
                "hg" => ApkToken::PostSuffix(3, n),
                _ => ApkToken::PostSuffix(4, n), // "p" and anything else after a release
            };
            tokens.push(token);
        }
    }
    (tokens, revision)
}

/// Alpine (apk) version comparison.
pub fn apk_compare(a: &str, b: &str) -> Ordering {
    let (ta, ra) = apk_tokens(a.trim());
    let (tb, rb) = apk_tokens(b.trim());
    let len = ta.len().max(tb.len());
    for i in 0..len {
        let x = ta.get(i).cloned().unwrap_or(ApkToken::End);
        let y = tb.get(i).cloned().unwrap_or(ApkToken::End);
        match (&x, &y) {
            // A longer number sequence is newer (1.2.1 > 1.2).
            (ApkToken::Number(_), ApkToken::End) => return Ordering::Greater,
            (ApkToken::End, ApkToken::Number(_)) => return Ordering::Less,
            _ => {}
        }
        match x.cmp(&y) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    ra.cmp(&rb)
}

// ---- PEP 440 ------------------------------------------------------------------------

/// (epoch, release, pre-phase key, post, dev): compared as a tuple.
type Pep440Key = (u64, Vec<u64>, (i8, u64), i64, (i8, u64));

fn pep440_key(v: &str) -> Pep440Key {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_prefix('v').unwrap_or(&v);
    let v = v.split('+').next().unwrap_or(v); // local versions sort with their public part
    let (epoch, rest) = match v.split_once('!') {
        Some((e, r)) => (e.parse().unwrap_or(0), r),
        None => (0, v),
    };
    let mut release = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            break;
        }
        release.push(rest[start..i].parse().unwrap_or(u64::MAX));
        if i < bytes.len() && bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
        } else {
            break;
        }
    }
    while release.len() > 1 && release.last() == Some(&0) {
        release.pop();
    }
    let tail = &rest[i..];
    let mut pre: Option<(i8, u64)> = None;
    let mut post: Option<u64> = None;
    let mut dev: Option<u64> = None;
    let mut t = tail;
    let number = |s: &str| -> (u64, usize) {
        let s2 = s.trim_start_matches(['.', '-', '_']);
        let skipped = s.len() - s2.len();
        let digits: String = s2.chars().take_while(char::is_ascii_digit).collect();
        (digits.parse().unwrap_or(0), skipped + digits.len())
    };
    while !t.is_empty() {
        let t2 = t.trim_start_matches(['.', '-', '_']);
        let (label, phase) = [
            ("alpha", 0),
            ("beta", 1),
            ("preview", 2),
            ("pre", 2),
            ("rc", 2),
            ("a", 0),
            ("b", 1),
            ("c", 2),
            ("post", 10),
            ("rev", 10),
            ("r", 10),
            ("dev", 20),
        ]
        .into_iter()
        .find(|(l, _)| t2.starts_with(l))
        .unwrap_or(("", -1));
        if phase < 0 {
            // `1.0-1` is a post-release.
            let (n, used) = number(t2);
            if used > 0 && t.starts_with('-') {
                post = Some(n);
                t = &t2[used..];
                continue;
            }
            break;
        }
        let (n, used) = number(&t2[label.len()..]);
        match phase {
            10 => post = Some(n),
            20 => dev = Some(n),
            p => pre = Some((p, n)),
        }
        t = &t2[label.len() + used..];
    }
    // dev-only releases sort before pre-releases; releases after them.
    let pre_key = match (pre, dev, post) {
        (Some(p), _, _) => p,
        (None, Some(_), None) => (-1, 0),
        _ => (3, 0),
    };
    let post_key = post.map_or(-1, |p| p as i64);
    let dev_key = dev.map_or((1, 0), |d| (0, d));
    (epoch, release, pre_key, post_key, dev_key)
}

fn compare_release(a: &[u64], b: &[u64]) -> Ordering {
    let len = a.len().max(b.len());
    for i in 0..len {
        match a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

/// PEP 440 comparison.
pub fn pep440_compare(a: &str, b: &str) -> Ordering {
    let (ea, ra, pa, qa, da) = pep440_key(a);
    let (eb, rb, pb, qb, db) = pep440_key(b);
    ea.cmp(&eb)
        .then_with(|| compare_release(&ra, &rb))
        .then_with(|| pa.cmp(&pb))
        .then_with(|| qa.cmp(&qb))
        .then_with(|| da.cmp(&db))
}

// ---- Maven --------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum MavenItem {
    Number(u64),
    Qualifier(String),
}

fn maven_qualifier_rank(q: &str) -> (i32, String) {
    let rank = match q {
        "alpha" | "a" => 0,
        "beta" | "b" => 1,
        "milestone" | "m" => 2,
        "rc" | "cr" => 3,
        "snapshot" => 4,
        "" | "ga" | "final" | "release" => 5,
        "sp" => 6,
        _ => 7, // unknown qualifiers sort after known ones, lexically
    };
    (
        rank,
        if rank == 7 {
            q.to_string()
        } else {
            String::new()
        },
    )
}

fn maven_items(v: &str) -> Vec<MavenItem> {
    let v = v.trim().to_ascii_lowercase();
    let mut items = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, items: &mut Vec<MavenItem>| {
        if current.is_empty() {
            return;
        }
        if current.chars().all(|c| c.is_ascii_digit()) {
            items.push(MavenItem::Number(current.parse().unwrap_or(u64::MAX)));
        } else {
            items.push(MavenItem::Qualifier(std::mem::take(current)));
        }
        current.clear();
    };
    // Zeros before a `-` or a qualifier carry no meaning either (1.0-rc1 == 1-rc1,
    // 1.0.alpha == 1-alpha, as Maven normalises each sub-list); the first item stays.
    let trim_zeros = |items: &mut Vec<MavenItem>| {
        while items.len() > 1 && items.last() == Some(&MavenItem::Number(0)) {
            items.pop();
        }
    };
    let mut last_digit: Option<bool> = None;
    for c in v.chars() {
        if c == '.' || c == '-' || c == '_' {
            flush(&mut current, &mut items);
            if c == '-' {
                trim_zeros(&mut items);
            }
            last_digit = None;
            continue;
        }
        let digit = c.is_ascii_digit();
        if last_digit.is_some_and(|d| d != digit) {
            flush(&mut current, &mut items);
        }
        if !digit && current.is_empty() {
            trim_zeros(&mut items);
        }
        current.push(c);
        last_digit = Some(digit);
    }
    flush(&mut current, &mut items);
    // Trailing zeros and release qualifiers carry no meaning (1.0 == 1 == 1.0.0-ga).
    while let Some(last) = items.last() {
        let empty = match last {
            MavenItem::Number(0) => true,
            MavenItem::Qualifier(q) => maven_qualifier_rank(q).0 == 5,
            _ => false,
        };
        if empty {
            items.pop();
        } else {
            break;
        }
    }
    items
}

/// Maven version comparison (ComparableVersion's ordering for the usual forms). A total
/// order: the shorter list is padded with the release qualifier, which sorts after the
/// pre-release qualifiers and before `sp`, unknown qualifiers and every number (a number
/// against padding is never "equal to 0": trailing zeros were trimmed, and treating a
/// middle zero as padding made 1.0-snapshot < 1 < 1-x0 while 1.0-snapshot > 1-x0).
pub fn maven_compare(a: &str, b: &str) -> Ordering {
    let (ia, ib) = (maven_items(a), maven_items(b));
    let len = ia.len().max(ib.len());
    for i in 0..len {
        let ord = match (ia.get(i), ib.get(i)) {
            (Some(MavenItem::Number(x)), Some(MavenItem::Number(y))) => x.cmp(y),
            (Some(MavenItem::Number(_)), Some(MavenItem::Qualifier(_))) => Ordering::Greater,
            (Some(MavenItem::Qualifier(_)), Some(MavenItem::Number(_))) => Ordering::Less,
            (Some(MavenItem::Qualifier(x)), Some(MavenItem::Qualifier(y))) => {
                maven_qualifier_rank(x).cmp(&maven_qualifier_rank(y))
            }
            (Some(MavenItem::Number(_)), None) => Ordering::Greater,
            (None, Some(MavenItem::Number(_))) => Ordering::Less,
            (Some(MavenItem::Qualifier(x)), None) => {
                maven_qualifier_rank(x).cmp(&(5, String::new()))
            }
            (None, Some(MavenItem::Qualifier(y))) => {
                (5, String::new()).cmp(&maven_qualifier_rank(y))
            }
            (None, None) => Ordering::Equal,
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

// ---- semver -------------------------------------------------------------------------

/// Semantic version comparison; any number of numeric parts (NuGet has four), a leading
/// `v` (Go) ignored, build metadata ignored, pre-releases before their release.
pub fn semver_compare(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (Vec<u64>, Option<Vec<String>>) {
        let v = v.trim();
        let v = v.strip_prefix('v').unwrap_or(v);
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p.split('.').map(str::to_string).collect())),
            None => (v, None),
        };
        (
            core.split('.').map(|p| p.parse().unwrap_or(0)).collect(),
            pre,
        )
    }
    let (ca, pa) = split(a);
    let (cb, pb) = split(b);
    compare_release(&ca, &cb).then_with(|| match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            for (p, q) in x.iter().zip(&y) {
                let ord = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => p.cmp(q),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            x.len().cmp(&y.len())
        }
    })
}

// ---- RubyGems -----------------------------------------------------------------------

/// Two runs of ASCII digits as the numbers they write, of any length (leading zeros
/// carry no meaning).
fn compare_digits(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GemSegment<'a> {
    Number(&'a str),
    Text(&'a str),
}

impl GemSegment<'_> {
    fn is_zero(self) -> bool {
        matches!(self, GemSegment::Number(n) if n.bytes().all(|b| b == b'0'))
    }
}

/// `Gem::Version#canonical_segments`: runs of digits and of letters (a `-` reads as
/// `.pre.`, as `Gem::Version.new` rewrites it), the release part and the pre-release
/// part (from the first letters on) each without trailing zeros.
fn gem_segments(v: &str) -> Vec<GemSegment<'_>> {
    let bytes = v.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i].is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            segments.push(GemSegment::Number(&v[start..i]));
        } else if bytes[i].is_ascii_alphabetic() {
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            segments.push(GemSegment::Text(&v[start..i]));
        } else {
            if bytes[i] == b'-' {
                segments.push(GemSegment::Text("pre"));
            }
            i += 1;
        }
    }
    let split = segments
        .iter()
        .position(|s| matches!(s, GemSegment::Text(_)))
        .unwrap_or(segments.len());
    let mut pre = segments.split_off(split);
    for part in [&mut segments, &mut pre] {
        while part.last().is_some_and(|s| s.is_zero()) {
            part.pop();
        }
    }
    segments.extend(pre);
    segments
}

/// RubyGems' `Gem::Version#<=>`: segment by segment, a missing one as 0, letters (a
/// pre-release) before any number, letters compared byte by byte (`1.0.a` = `1.a` <
/// `1.0` = `1`; `1.0.0.pre.rc1` < `1.0.0.rc1` < `1.0.0`).
pub fn gem_compare(a: &str, b: &str) -> Ordering {
    let (sa, sb) = (gem_segments(a.trim()), gem_segments(b.trim()));
    for i in 0..sa.len().max(sb.len()) {
        let x = sa.get(i).copied().unwrap_or(GemSegment::Number("0"));
        let y = sb.get(i).copied().unwrap_or(GemSegment::Number("0"));
        let ord = match (x, y) {
            (GemSegment::Number(m), GemSegment::Number(n)) => compare_digits(m, n),
            (GemSegment::Text(_), GemSegment::Number(_)) => Ordering::Less,
            (GemSegment::Number(_), GemSegment::Text(_)) => Ordering::Greater,
            (GemSegment::Text(s), GemSegment::Text(t)) => s.cmp(t),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

// ---- Composer (Packagist) -----------------------------------------------------------

/// PHP `version_compare`'s special forms, by the prefix they start with: `dev` <
/// `alpha`/`a` < `beta`/`b` < `RC`/`rc` < a number (`#`) < `pl`/`p`; anything else
/// before `dev`.
fn php_form_rank(form: &str) -> i8 {
    const FORMS: [(&str, i8); 10] = [
        ("dev", 0),
        ("alpha", 1),
        ("a", 1),
        ("beta", 2),
        ("b", 2),
        ("RC", 3),
        ("rc", 3),
        ("#", 4),
        ("pl", 5),
        ("p", 5),
    ];
    FORMS
        .iter()
        .find(|(prefix, _)| form.starts_with(prefix))
        .map_or(-1, |&(_, rank)| rank)
}

/// The rank a number has against a special form.
const PHP_NUMBER_RANK: i8 = 4;

/// A part of a version as `version_compare` splits it: its form's rank and, for a
/// number, its digits. A missing part is (number rank, none): below every number,
/// between `RC` and `patch`.
type PhpPart<'a> = (i8, Option<&'a str>);

/// `version_compare`'s canonical parts: `-`, `_`, `+` and `.` separate, and so does a
/// change between digits and anything else.
fn php_parts(v: &str) -> Vec<PhpPart<'_>> {
    let bytes = v.as_bytes();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if matches!(bytes[i], b'.' | b'-' | b'_' | b'+') {
            i += 1;
            continue;
        }
        let start = i;
        let digits = bytes[i].is_ascii_digit();
        while i < bytes.len()
            && !matches!(bytes[i], b'.' | b'-' | b'_' | b'+')
            && bytes[i].is_ascii_digit() == digits
        {
            i += 1;
        }
        let part = &v[start..i];
        parts.push(if digits {
            (PHP_NUMBER_RANK, Some(part))
        } else {
            (php_form_rank(part), None)
        });
    }
    parts
}

/// Composer's `VersionParser::normalize` for the versions packages are released under:
/// `v1.2` → `1.2.0.0`, `1.0.0-b2` → `1.0.0.0-beta2`, `2.0.0p1` → `2.0.0.0-patch1`,
/// `2023-12-01` → `2023.12.01`; `None` for what it refuses or reads as a branch
/// (`dev-main`, `1.x-dev`).
fn composer_normalize(v: &str) -> Option<String> {
    let v = v.trim();
    // An alias (`1.0.0 as 1.0.1`) is its first version; `@stability` and build metadata
    // carry no order.
    let v = match v.split_once(" as ") {
        Some((first, _)) if !first.trim().contains([',', ' ']) => first.trim(),
        _ => v,
    };
    let v = ["@stable", "@rc", "@beta", "@alpha", "@dev"]
        .iter()
        .find_map(|flag| {
            let cut = v.len().checked_sub(flag.len())?;
            (v.is_char_boundary(cut) && v[cut..].eq_ignore_ascii_case(flag)).then(|| &v[..cut])
        })
        .unwrap_or(v);
    if v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("dev-"))
        || ["master", "trunk", "default"].contains(&v)
    {
        return None;
    }
    let v = match v.split_once('+') {
        Some((core, meta))
            if !core.is_empty()
                && !core.contains([',', '+'])
                && !core.contains(char::is_whitespace)
                && !meta.is_empty()
                && !meta.contains(char::is_whitespace) =>
        {
            core
        }
        _ => v,
    };
    let body = v.strip_prefix(['v', 'V']).unwrap_or(v);
    // Classic: one to five digits, up to three more `.`-numbers (all of them: the
    // modifier cannot start with a digit), then the modifier.
    let major = body.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=5).contains(&major) {
        let mut end = major;
        let mut numbers = vec![&body[..major]];
        while numbers.len() < 4 {
            let digits = body[end..]
                .strip_prefix('.')
                .map_or(0, |r| r.bytes().take_while(u8::is_ascii_digit).count());
            if digits == 0 {
                break;
            }
            numbers.push(&body[end + 1..end + 1 + digits]);
            end += 1 + digits;
        }
        if let Some(suffix) = composer_modifier(&body[end..]) {
            numbers.resize(4, "0");
            return Some(numbers.join(".") + &suffix);
        }
    }
    // Dates: four digits, one to six pairs, then a group of one to three, any of `.`,
    // `:` or `-` before each; the longest reading the modifier accepts.
    let digits_at = |at: usize, n: usize| {
        body.get(at..at + n)
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
    };
    let separated = |at: usize| {
        let sep = usize::from(body[at..].starts_with(['.', ':', '-']));
        [at, at + sep]
    };
    if !digits_at(0, 4) {
        return composer_numeric_branch(v);
    }
    let mut ends = Vec::new();
    let mut frontier = vec![4];
    for _ in 0..6 {
        let mut next = Vec::new();
        for at in frontier {
            for start in separated(at) {
                if digits_at(start, 2) {
                    next.push(start + 2);
                }
            }
        }
        next.dedup();
        ends.extend(&next);
        frontier = next;
    }
    for at in ends.clone() {
        for start in separated(at) {
            for n in 1..=3 {
                if digits_at(start, n) {
                    ends.push(start + n);
                }
            }
        }
    }
    ends.sort_unstable();
    ends.dedup();
    ends.into_iter()
        .rev()
        .find_map(|end| {
            let suffix = composer_modifier(&body[end..])?;
            let date: String = body[..end]
                .chars()
                .map(|c| if c.is_ascii_digit() { c } else { '.' })
                .collect();
            Some(date + &suffix)
        })
        .or_else(|| composer_numeric_branch(v))
}

/// A numeric branch (`1.0.x-dev`, `2-dev`): its numbers with `x` (and missing ones) as
/// 9999999, then `-dev`, as Composer's `normalizeBranch` makes it.
fn composer_numeric_branch(v: &str) -> Option<String> {
    let lower = v.to_ascii_lowercase();
    let name = lower.strip_suffix("dev")?;
    let name = name.strip_suffix(['.', '-']).unwrap_or(name);
    let name = name.trim();
    let name = name.strip_prefix('v').unwrap_or(name);
    let mut parts: Vec<&str> = name.split('.').collect();
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() > 4
        || !numeric(parts[0])
        || !parts[1..]
            .iter()
            .all(|p| numeric(p) || *p == "x" || *p == "*")
    {
        return None;
    }
    parts.resize(4, "x");
    let numbers: Vec<&str> = parts
        .iter()
        .map(|p| if numeric(p) { *p } else { "9999999" })
        .collect();
    Some(numbers.join(".") + "-dev")
}

/// Composer's version modifier, `[._-]?(?:(stability)((?:[.-]?\d+)*))?([.-]?dev)?` in
/// any case, as the suffix the normalized version gets (`-beta2`, `-RC1-dev`, `-dev`, or
/// nothing for none or `stable`); `None` when `rest` is no modifier.
fn composer_modifier(rest: &str) -> Option<String> {
    let rest = rest.strip_prefix(['.', '_', '-']).unwrap_or(rest);
    let lower = rest.to_ascii_lowercase();
    let mut m = lower.as_str();
    let stability = [
        "stable", "beta", "b", "rc", "alpha", "a", "patch", "pl", "p",
    ]
    .into_iter()
    .find(|s| m.starts_with(s));
    let mut suffix = String::new();
    if let Some(stability) = stability {
        m = &m[stability.len()..];
        // Digit groups, each after an optional `.` or `-`.
        let mut number_len = 0;
        loop {
            let at = &m[number_len..];
            let sep = usize::from(at.starts_with(['.', '-']));
            let digits = at[sep..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                break;
            }
            number_len += sep + digits;
        }
        let number = &m[..number_len];
        m = &m[number_len..];
        // Composer leaves the version as it is (not even `-dev`) for `stable` written in
        // lower case; in another case it is a stability of its own.
        if &rest[..stability.len()] == "stable" {
            return matches!(m.strip_prefix(['.', '-']).unwrap_or(m), "" | "dev")
                .then(String::new)
                .filter(|_| !matches!(m, "." | "-"));
        } else {
            let expanded = match stability {
                "a" => "alpha",
                "b" => "beta",
                "p" | "pl" => "patch",
                "rc" => "RC",
                other => other,
            };
            suffix = format!("-{expanded}{}", number.trim_start_matches(['.', '-']));
        }
    }
    match m.strip_prefix(['.', '-']).unwrap_or(m) {
        "" if m.is_empty() => Some(suffix),
        "dev" => Some(suffix + "-dev"),
        _ => None,
    }
}

/// Composer's ordering of package versions: both normalized as Composer normalizes them
/// (what it stores as `version_normalized` and compares constraints with), then PHP's
/// `version_compare` (`1.0.0-beta9` < `1.0.0-beta10` < `1.0.0-RC1` < `1.0.0` <
/// `1.0.0-patch1`); a version it cannot normalize (a `dev-` branch) as written.
pub fn composer_compare(a: &str, b: &str) -> Ordering {
    let (na, nb) = (composer_normalize(a), composer_normalize(b));
    let pa = php_parts(na.as_deref().unwrap_or(a.trim()));
    let pb = php_parts(nb.as_deref().unwrap_or(b.trim()));
    let missing: PhpPart = (PHP_NUMBER_RANK, None);
    for i in 0..pa.len().max(pb.len()) {
        let (x, y) = (
            pa.get(i).copied().unwrap_or(missing),
            pb.get(i).copied().unwrap_or(missing),
        );
        let ord = x.0.cmp(&y.0).then_with(|| match (x.1, y.1) {
            (Some(m), Some(n)) => compare_digits(m, n),
            (m, n) => m.is_some().cmp(&n.is_some()),
        });
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

// ---- OSV ranges ---------------------------------------------------------------------

/// Whether `version` is affected by OSV `ranges` (SEMVER and ECOSYSTEM; GIT ranges name
/// commits and are skipped) or the explicit `versions` list. Within a range, a version is
/// affected from an `introduced` until the next `fixed` (exclusive) or `last_affected`
/// (inclusive); `limit` caps the range.
pub fn is_affected(
    scheme: Scheme,
    version: &str,
    ranges: &serde_json::Value,
    versions: &[String],
) -> bool {
    affected(scheme, version, ranges, versions).is_some()
}

/// How a version is affected: the fix of the range that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affected {
    /// The `fixed` event that ends the affected stretch holding the version, if the
    /// advisory names one (none after a `last_affected`, none when only the explicit
    /// `versions` list names it).
    pub fixed: Option<String>,
}

/// [`is_affected`], and with it the fix that applies to *this* version: with several
/// ranges (or several introduced/fixed pairs in one range), the first `fixed` above the
/// version in the stretch that contains it — never the fix of another stretch, which may
/// lie below the installed version.
pub fn affected(
    scheme: Scheme,
    version: &str,
    ranges: &serde_json::Value,
    versions: &[String],
) -> Option<Affected> {
    let listed = versions
        .iter()
        .any(|v| scheme.compare(v, version) == Ordering::Equal);
    let mut found: Option<Affected> = None;
    for range in ranges.as_array().into_iter().flatten() {
        if let Some(fixed) = range_holds(scheme, version, range) {
            if fixed.is_some() {
                return Some(Affected { fixed });
            }
            found.get_or_insert(Affected { fixed: None });
        }
    }
    found.or(listed.then_some(Affected { fixed: None }))
}

/// Whether one OSV range holds `version`: `Some(fix)` when it does, with the `fixed`
/// event ending that stretch.
fn range_holds(scheme: Scheme, version: &str, range: &serde_json::Value) -> Option<Option<String>> {
    if range["type"].as_str() == Some("GIT") {
        return None;
    }
    let events = range["events"].as_array()?;
    let limit = events.iter().find_map(|e| e["limit"].as_str());
    if let Some(limit) = limit
        && limit != "*"
        && scheme.compare(version, limit) != Ordering::Less
    {
        return None;
    }
    // Events sorted by version ("0" first), then walked in order.
    let mut sorted: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| {
            let obj = e.as_object()?;
            let (k, v) = obj.iter().next()?;
            Some((k.as_str(), v.as_str()?))
        })
        .filter(|(k, _)| *k != "limit")
        .collect();
    sorted.sort_by(|(_, a), (_, b)| match (*a, *b) {
        ("0", "0") => Ordering::Equal,
        ("0", _) => Ordering::Less,
        (_, "0") => Ordering::Greater,
        (a, b) => scheme.compare(a, b),
    });
    let mut affected = false;
    let mut end: Option<Option<String>> = None;
    for (kind, at) in sorted {
        let cmp = if at == "0" {
            Ordering::Greater
        } else {
            scheme.compare(version, at)
        };
        if cmp == Ordering::Less {
            // Above the version: the first event that closes a stretch closes this one.
            if end.is_none() {
                match kind {
                    "fixed" => end = Some(Some(at.to_string())),
                    "last_affected" => end = Some(None),
                    _ => {}
                }
            }
            continue;
        }
        match kind {
            "introduced" => affected = true,
            "fixed" => affected = false,
            "last_affected" if cmp == Ordering::Greater => affected = false,
            // The version is the last affected one of its stretch: no fix is named.
            "last_affected" if end.is_none() => end = Some(None),
            _ => {}
        }
    }
    affected.then(|| end.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};
    use serde_json::json;

    fn check(scheme: Scheme, cases: &[(&str, &str, Ordering)]) {
        for (a, b, want) in cases {
            assert_eq!(scheme.compare(a, b), *want, "{scheme:?}: {a} vs {b}");
            assert_eq!(
                scheme.compare(b, a),
                want.reverse(),
                "{scheme:?}: {b} vs {a}"
            );
        }
    }

    #[test]
    fn dpkg_follows_debian_policy() {
        // Debian policy §5.6.12 and dpkg's own test vectors.
        check(
            Scheme::Dpkg,
            &[
                ("1.0~rc1", "1.0", Less),
                ("1.0~~", "1.0~~a", Less),
                ("1.0~~a", "1.0~", Less),
                ("1.0~", "1.0", Less),
                ("1.0", "1.0a", Less),
                ("1:0.9", "2.0", Greater),
                ("1.0-1", "1.0-2", Less),
                ("1.0-10", "1.0-9", Greater),
                ("2.30-1", "2.30", Greater),
                ("3.0.11-1~deb12u2", "3.0.11-1", Less),
                ("3.0.11-1~deb12u2", "3.0.11-1~deb12u1", Greater),
                ("1.2.3", "1.2.3", Equal),
                ("0:1.2.3", "1.2.3", Equal),
                ("1.002", "1.2", Equal),
                ("1.0+dfsg-1", "1.0-1", Greater),
                ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", Less),
            ],
        );
    }

    #[test]
    fn rubygems_orders_prereleases_first_and_ignores_trailing_zeros() {
        // Cases from RubyGems' `Gem::Version#<=>` (the workers' tests compare thousands
        // more with a real Ruby).
        check(
            Scheme::Gem,
            &[
                ("1.0", "1", Equal),
                ("1.0.a", "1.a", Equal),
                ("1.0.0.pre", "1.0.0", Less),
                ("1.0.0-rc1", "1.0.0.rc1", Less),
                ("7.1.0.beta1", "7.1.0", Less),
                ("7.1.0.beta1", "7.0.8.1", Greater),
                ("1.0.0.rc10", "1.0.0.rc9", Greater),
                ("1.0.0.RC1", "1.0.0.rc1", Less),
                ("2.2.22", "2.2.3", Greater),
                ("1.0.0.1", "1.0.0", Greater),
                ("1.01", "1.1", Equal),
            ],
        );
        assert_eq!(Scheme::of("RubyGems"), Scheme::Gem);
    }

    #[test]
    fn nuget_compares_prerelease_labels_without_case() {
        check(
            Scheme::NuGet,
            &[
                ("1.0.0-Beta", "1.0.0-beta", Equal),
                ("1.0.0-Beta", "1.0.0-alpha", Greater),
                ("1.0.0-RC.2", "1.0.0-rc.10", Less),
                ("1.0.0.0", "1.0.0", Equal),
                ("4.0.0-preview1", "4.0.0", Less),
                ("13.0.1", "12.0.3.1", Greater),
            ],
        );
        // Semantic versions proper (npm) keep ASCII order: `Beta` < `alpha`.
        assert_eq!(Scheme::Semver.compare("1.0.0-Beta", "1.0.0-alpha"), Less);
        assert_eq!(Scheme::of("NuGet"), Scheme::NuGet);
    }

    #[test]
    fn composer_normalizes_then_orders_as_php_version_compare() {
        check(
            Scheme::Composer,
            &[
                ("v1.2", "1.2.0", Equal),
                ("1.0.0-beta9", "1.0.0-beta10", Less),
                ("1.0.0-b2", "1.0.0-beta2", Equal),
                ("1.0.0-RC1", "1.0.0-rc1", Equal),
                ("1.0.0-RC1", "1.0.0", Less),
                ("1.0.0-patch1", "1.0.0", Greater),
                ("2.0.0p1", "2.0.0-pl1", Equal),
                ("1.0.0-alpha", "1.0.0-dev", Greater),
                ("1.0.x-dev", "1.0.5", Greater),
                ("dev-main", "0.0.1", Less),
                ("5.4.45", "v5.4.46", Less),
                ("1.0.0+build.5", "1.0.0", Equal),
            ],
        );
        // What Composer's `VersionParser::normalize` gives (checked with Composer 2.5).
        for (version, normalized) in [
            ("1.0.0-b2", Some("1.0.0.0-beta2")),
            ("2.0.0p1", Some("2.0.0.0-patch1")),
            ("2023-12-01", Some("2023.12.01")),
            ("1.0.x-dev", Some("1.0.9999999.9999999-dev")),
            ("v1", Some("1.0.0.0")),
            ("1.0.0-stable-dev", Some("1.0.0.0")),
            ("1.0.0-STABLE", Some("1.0.0.0-stable")),
            ("1.0.0-beta.1.2", Some("1.0.0.0-beta1.2")),
            ("1.0.0-RC1-dev", Some("1.0.0.0-RC1-dev")),
            ("1.0.0@beta", Some("1.0.0.0")),
            ("1.0.0-", Some("1.0.0.0")),
            ("1.2.3.4.5", None),
            ("dev-main", None),
        ] {
            assert_eq!(
                composer_normalize(version).as_deref(),
                normalized,
                "{version}"
            );
        }
        assert_eq!(Scheme::of("Packagist"), Scheme::Composer);
    }

    #[test]
    fn apk_orders_suffixes_letters_and_revisions() {
        check(
            Scheme::Apk,
            &[
                ("1.2.3-r0", "1.2.3-r1", Less),
                ("1.2.3_rc1-r0", "1.2.3-r0", Less),
                ("1.2.3_alpha", "1.2.3_beta", Less),
                ("1.2.3_p1", "1.2.3", Greater),
                ("1.2.3a", "1.2.3", Greater),
                ("1.2.3a", "1.2.3b", Less),
                ("1.2.10", "1.2.9", Greater),
                ("1.2", "1.2.1", Less),
                ("3.1.4-r5", "3.1.4-r5", Equal),
                ("1.36.1-r15", "1.36.1-r2", Greater),
            ],
        );
    }

    #[test]
    fn pep440_orders_dev_pre_release_post() {
        // The ordering example of PEP 440 §"Summary of permitted suffixes and relative ordering".
        let ordered = [
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ];
        for pair in ordered.windows(2) {
            let ord = Scheme::Pep440.compare(pair[0], pair[1]);
            assert!(
                ord != Greater,
                "{} should not sort after {}",
                pair[0],
                pair[1]
            );
        }
        check(
            Scheme::Pep440,
            &[
                ("1.0", "1.0.0", Equal),
                ("1!0.1", "2.0", Greater),
                ("2.0.0rc1", "2.0.0", Less),
                ("2.31.0", "2.4.0", Greater),
                ("1.0-1", "1.0", Greater),
                ("1.0.post1", "1.0", Greater),
                ("1.0a1", "1.0.dev1", Greater),
            ],
        );
    }

    #[test]
    fn maven_orders_qualifiers() {
        check(
            Scheme::Maven,
            &[
                ("1.0-alpha-1", "1.0-beta-1", Less),
                ("1.0-rc1", "1.0", Less),
                ("1.0-SNAPSHOT", "1.0", Less),
                ("1.0-rc1", "1.0-SNAPSHOT", Less),
                ("1.0", "1.0.0", Equal),
                ("1.0-ga", "1", Equal),
                ("1.0-sp1", "1.0", Greater),
                ("2.17.1", "2.17.0", Greater),
                ("2.9.10.8", "2.10.0", Less),
                ("1.0.1", "1.0-foo", Greater),
                ("1.0-1", "1-1", Equal),
                ("1.0.alpha", "1-alpha", Equal),
                ("0-1", "1", Less),
            ],
        );
    }

    /// Found by the `version_order` fuzz target (fuzz/artifacts, 2026-12-03): a middle zero
    /// compared as padding made the order intransitive.
    #[test]
    fn maven_is_transitive_where_the_fuzzer_found_it_was_not() {
        let (a, b, c) = ("1.0-SNAPSHOt", "1.0", "1\u{fffd}0-alpha-1");
        let cmp = |x, y| Scheme::Maven.compare(x, y);
        assert_eq!(cmp(a, b), Less);
        assert_eq!(cmp(b, c), Less);
        assert_eq!(cmp(a, c), Less);
        for (x, y) in [(a, b), (b, c), (a, c)] {
            assert_eq!(cmp(x, y), cmp(y, x).reverse());
        }
    }

    #[test]
    fn semver_orders_prereleases_and_any_length() {
        check(
            Scheme::Semver,
            &[
                ("1.0.0-alpha", "1.0.0-alpha.1", Less),
                ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
                ("1.0.0-beta.2", "1.0.0-beta.11", Less),
                ("1.0.0-rc.1", "1.0.0", Less),
                ("v1.20.3", "1.20.10", Less),
                ("4.19.2", "4.19.2+build.5", Equal),
                ("6.0.0.1", "6.0.0", Greater),
            ],
        );
    }

    #[test]
    fn rpm_follows_rpmvercmp() {
        // Vectors from rpm's own test suite (tests/rpmvercmp.at).
        check(
            Scheme::Rpm,
            &[
                ("1.0", "1.0", Equal),
                ("1.0", "2.0", Less),
                ("2.0.1", "2.0", Greater),
                ("2.0.1a", "2.0.1", Greater),
                ("5.5p1", "5.5p2", Less),
                ("5.5p10", "5.5p1", Greater),
                ("10xyz", "10.1xyz", Less),
                ("xyz10", "xyz10.1", Less),
                ("xyz.4", "8", Less),
                ("8", "xyz.4", Greater),
                ("5.5p1", "5.5.p1", Equal),
                ("10b2", "10a1", Greater),
                ("1.0aa", "1.0a", Greater),
                ("6.0.rc1", "6.0", Greater),
                ("10.0001", "10.1", Equal),
                ("10.0001", "10.0039", Less),
                ("4.999.9", "5.0", Less),
                ("20101121", "20101122", Less),
                ("2_0", "2_0", Equal),
                ("2.0", "2_0", Equal),
                ("a", "a", Equal),
                ("a+", "a+", Equal),
                ("a+", "a_", Equal),
                ("+a", "_a", Equal),
                ("1.0~rc1", "1.0~rc1", Equal),
                ("1.0~rc1", "1.0", Less),
                ("1.0", "1.0~rc1", Greater),
                ("1.0~rc1", "1.0~rc2", Less),
                ("1.0~rc1~git123", "1.0~rc1", Less),
                ("1.0^", "1.0", Greater),
                ("1.0^git1", "1.0", Greater),
                ("1.0^git1", "1.0^git2", Less),
                ("1.0^git1", "1.01", Less),
                ("1.0^20160101", "1.0.1", Less),
                ("1.0^20160101^git1", "1.0^20160101", Greater),
                ("1.0~rc1^git1", "1.0~rc1", Greater),
                ("1.0^git1~pre", "1.0^git1", Less),
                // Epoch and release.
                ("1:1.0-1", "2.0-1", Greater),
                ("0:3.0.7-27.el9", "3.0.7-27.el9", Equal),
                ("3.0.7-27.el9", "3.0.7-28.el9", Less),
                ("3.0.7-27.el9_2.1", "3.0.7-27.el9", Greater),
                ("3.0.7", "3.0.7-27.el9", Less),
                ("3.0.7-1", "3.0.7", Greater),
                ("1:3.0.7-24.el9", "1:3.0.7-27.el9", Less),
            ],
        );
        assert_eq!(
            Scheme::of("Red Hat:enterprise_linux:9::baseos"),
            Scheme::Rpm
        );
        assert_eq!(Scheme::of("Rocky Linux:9"), Scheme::Rpm);
    }

    #[test]
    fn rpm_order_is_transitive_with_and_without_releases() {
        let versions = [
            "1.0",
            "1.0-1",
            "1.0-2",
            "0:1.0-2",
            "1:0.9",
            "1.0~rc1",
            "1.0~rc1-5",
            "1.0^git1",
            "1.0.1",
            "2_0",
            "2.0",
            "2.0-1.el9",
        ];
        for a in versions {
            for b in versions {
                for c in versions {
                    let (ab, bc, ac) = (rpm_compare(a, b), rpm_compare(b, c), rpm_compare(a, c));
                    if ab != Greater && bc != Greater {
                        assert_ne!(ac, Greater, "{a} <= {b} <= {c} but {a} > {c}");
                    }
                    if ab == Equal && bc == Equal {
                        assert_eq!(ac, Equal, "{a} == {b} == {c} but not {a} == {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn osv_ranges() {
        let ranges = json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.19.2"}]},
                            {"type": "SEMVER", "events": [{"introduced": "5.0.0"}, {"last_affected": "5.0.3"}]}]);
        let s = Scheme::Semver;
        assert!(is_affected(s, "4.19.1", &ranges, &[]));
        assert!(!is_affected(s, "4.19.2", &ranges, &[]));
        assert!(!is_affected(s, "4.20.0", &ranges, &[]));
        assert!(is_affected(s, "5.0.3", &ranges, &[]));
        assert!(!is_affected(s, "5.0.4", &ranges, &[]));
        assert!(is_affected(s, "9.9.9", &ranges, &["9.9.9".into()]));
        // Re-introduced after a fix.
        let again = json!([{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}]}]);
        assert!(!is_affected(s, "1.5", &again, &[]));
        assert!(is_affected(s, "2.1", &again, &[]));
        let deb = json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]);
        assert!(is_affected(Scheme::Dpkg, "3.0.11-1~deb12u1", &deb, &[]));
        assert!(!is_affected(Scheme::Dpkg, "3.0.11-1~deb12u2", &deb, &[]));
        assert!(!is_affected(Scheme::Dpkg, "3.0.13-1~deb12u1", &deb, &[]));
        assert_eq!(
            affected(Scheme::Dpkg, "3.0.11-1~deb12u1", &deb, &[]),
            Some(Affected {
                fixed: Some("3.0.11-1~deb12u2".into())
            })
        );
        let git = json!([{"type": "GIT", "events": [{"introduced": "0"}]}]);
        assert!(!is_affected(s, "1.0", &git, &[]));
    }

    fn fix(scheme: Scheme, version: &str, ranges: &serde_json::Value) -> Option<Option<String>> {
        affected(scheme, version, ranges, &[]).map(|a| a.fixed)
    }

    #[test]
    fn the_fix_is_the_one_of_the_range_holding_the_version() {
        // The issue's example: 1.2.0 lies in the second range; its fix is 1.2.3, not the
        // first range's 0.2.1 (a downgrade).
        let two = json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.2.1"}]},
                         {"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.2.3"}]}]);
        let s = Scheme::Semver;
        assert_eq!(fix(s, "1.2.0", &two), Some(Some("1.2.3".into())));
        assert_eq!(fix(s, "0.1.0", &two), Some(Some("0.2.1".into())));
        assert_eq!(fix(s, "0.5.0", &two), None);
        assert_eq!(fix(s, "1.2.3", &two), None);
        // The same stretches as events of one range, listed out of order.
        let one = json!([{"type": "ECOSYSTEM", "events": [{"fixed": "1.2.3"}, {"introduced": "1.0.0"},
                                                          {"introduced": "0"}, {"fixed": "0.2.1"},
                                                          {"introduced": "2.0.0"}, {"fixed": "2.0.5"}]}]);
        assert_eq!(fix(s, "1.2.0", &one), Some(Some("1.2.3".into())));
        assert_eq!(fix(s, "0.0.1", &one), Some(Some("0.2.1".into())));
        assert_eq!(fix(s, "2.0.4", &one), Some(Some("2.0.5".into())));
        assert_eq!(fix(s, "1.5.0", &one), None);
        assert_eq!(fix(s, "3.0.0", &one), None);
        // A stretch closed by last_affected has no fix, even when a later stretch has one.
        let last = json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"last_affected": "1.0"},
                                                           {"introduced": "2.0"}, {"fixed": "2.5"}]}]);
        assert_eq!(fix(s, "0.5", &last), Some(None));
        assert_eq!(fix(s, "1.0", &last), Some(None));
        assert_eq!(fix(s, "2.1", &last), Some(Some("2.5".into())));
        // Re-introduced without a fix: affected, nothing to upgrade to.
        let open = json!([{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}]}]);
        assert_eq!(fix(s, "1.1", &open), Some(Some("1.2".into())));
        assert_eq!(fix(s, "2.1", &open), Some(None));
        // Named only in the explicit list: affected, no fix known.
        assert_eq!(
            affected(s, "9.9.9", &two, &["9.9.9".into()]),
            Some(Affected { fixed: None })
        );
        // dpkg ordering decides which stretch holds the version.
        let deb = json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]},
                         {"type": "ECOSYSTEM", "events": [{"introduced": "2.36-9+deb12u5"}, {"fixed": "2.36-9+deb12u10"}]}]);
        assert_eq!(
            fix(Scheme::Dpkg, "2.36-9+deb12u7", &deb),
            Some(Some("2.36-9+deb12u10".into()))
        );
        assert_eq!(fix(Scheme::Dpkg, "2.36-9+deb12u4", &deb), None);
    }
}
