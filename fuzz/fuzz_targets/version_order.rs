//! Every ecosystem's version comparator, checked for a total order on the versions the
//! input holds: reflexive, antisymmetric (a < b exactly when b > a) and transitive.
#![no_main]

use std::cmp::Ordering;

use libfuzzer_sys::fuzz_target;
use stellaops_scanner::versions::Scheme;

const SCHEMES: [Scheme; 9] = [
    Scheme::Dpkg,
    Scheme::Apk,
    Scheme::Pep440,
    Scheme::Maven,
    Scheme::Semver,
    Scheme::Rpm,
    Scheme::Gem,
    Scheme::Composer,
    Scheme::NuGet,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let scheme = SCHEMES[usize::from(selector) % SCHEMES.len()];
    let text = String::from_utf8_lossy(rest);
    // Three versions separated by newlines.
    let mut versions = text.splitn(3, '\n');
    let (Some(a), Some(b), Some(c)) = (versions.next(), versions.next(), versions.next()) else {
        return;
    };
    for v in [a, b, c] {
        assert_eq!(
            scheme.compare(v, v),
            Ordering::Equal,
            "{scheme:?}: {v:?} != itself"
        );
    }
    for (x, y) in [(a, b), (b, c), (a, c)] {
        assert_eq!(
            scheme.compare(x, y),
            scheme.compare(y, x).reverse(),
            "{scheme:?}: {x:?} vs {y:?} is not antisymmetric"
        );
    }
    let ab = scheme.compare(a, b);
    let bc = scheme.compare(b, c);
    let ac = scheme.compare(a, c);
    if ab != Ordering::Greater && bc != Ordering::Greater {
        assert_ne!(
            ac,
            Ordering::Greater,
            "{scheme:?}: {a:?} <= {b:?} <= {c:?} but {a:?} > {c:?}"
        );
    }
    if ab != Ordering::Less && bc != Ordering::Less {
        assert_ne!(
            ac,
            Ordering::Less,
            "{scheme:?}: {a:?} >= {b:?} >= {c:?} but {a:?} < {c:?}"
        );
    }
    if ab == Ordering::Equal && bc == Ordering::Equal {
        assert_eq!(
            ac,
            Ordering::Equal,
            "{scheme:?}: {a:?} = {b:?} = {c:?} but {a:?} != {c:?}"
        );
    }
});
