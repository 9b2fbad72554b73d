//! Package URLs in the canonical form of the purl specification (ECMA-427, "How to build
//! `purl` string from its components"): the type lowercased; each namespace segment, the
//! name, the version and each qualifier value percent-encoded (everything but ASCII
//! letters, digits, `.`, `-`, `_`, `~` and `:` is encoded as UTF-8 `%XX` with upper-case
//! hex); qualifier keys lowercased and sorted, empty values left out.
//!
//! The per-type normalisation (lower-cased Debian and Alpine names, PyPI's `_` → `-`, the
//! RPM epoch as a qualifier) is the caller's, in [`super::purl_of`].

use std::collections::BTreeMap;
use std::fmt;

/// A package URL from its components.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageUrl {
    ty: String,
    namespace: Vec<String>,
    name: String,
    version: Option<String>,
    qualifiers: BTreeMap<String, String>,
}

impl PackageUrl {
    /// `pkg:<ty>/<name>`.
    pub fn new(ty: &str, name: &str) -> Self {
        PackageUrl {
            ty: ty.to_ascii_lowercase(),
            name: name.to_string(),
            ..PackageUrl::default()
        }
    }

    /// The namespace, `/`-separated segments (empty segments are dropped).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        self
    }

    /// The version.
    pub fn version(mut self, version: &str) -> Self {
        self.version = (!version.is_empty()).then(|| version.to_string());
        self
    }

    /// A qualifier; an empty value is no qualifier.
    pub fn qualifier(mut self, key: &str, value: &str) -> Self {
        if !value.is_empty() {
            self.qualifiers
                .insert(key.to_ascii_lowercase(), value.to_string());
        }
        self
    }
}

impl fmt::Display for PackageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pkg:{}/", self.ty)?;
        for segment in &self.namespace {
            write!(f, "{}/", encode(segment))?;
        }
        f.write_str(&encode(&self.name))?;
        if let Some(version) = &self.version {
            write!(f, "@{}", encode(version))?;
        }
        for (i, (key, value)) in self.qualifiers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{key}={}", encode(value))?;
        }
        Ok(())
    }
}

/// Percent-encode one component: unreserved characters and `:` stay, the rest is `%XX`.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_encoded_and_qualifiers_sorted() {
        let p = PackageUrl::new("DEB", "attr")
            .namespace("debian")
            .version("1:2.4.47-2+b1")
            .qualifier("distro", "debian-12")
            .qualifier("Arch", "amd64")
            .qualifier("empty", "");
        assert_eq!(
            p.to_string(),
            "pkg:deb/debian/attr@1:2.4.47-2%2Bb1?arch=amd64&distro=debian-12"
        );
        let npm = PackageUrl::new("npm", "core")
            .namespace("@babel")
            .version("7.24.0");
        assert_eq!(npm.to_string(), "pkg:npm/%40babel/core@7.24.0");
        let go = PackageUrl::new("golang", "net")
            .namespace("golang.org/x")
            .version("v0.17.0");
        assert_eq!(go.to_string(), "pkg:golang/golang.org/x/net@v0.17.0");
        assert_eq!(encode("a b/c@d?e#f%é"), "a%20b%2Fc%40d%3Fe%23f%25%C3%A9");
    }
}
