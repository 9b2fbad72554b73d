//! What a registry or a tenant hands the registry client before any image is read: a
//! `WWW-Authenticate` challenge from a registry's 401 (a hostile registry picks every byte)
//! and a `.dockerconfigjson` from a pull Secret (a tenant picks every byte). The first byte
//! picks which. A challenge's values are cut from the header, never made up; a pull Secret's
//! registry hosts are bare hosts (no scheme, no path), since a credential goes only to the
//! host it is filed under.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_registry::{Challenge, Credentials, parse_challenge};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if which % 2 == 0 {
        if let Some(Challenge::Bearer {
            realm,
            service,
            scope,
        }) = parse_challenge(text)
        {
            for value in [Some(realm), service, scope].into_iter().flatten() {
                assert!(text.contains(&value), "{value:?} is not in {text:?}");
            }
        }
    } else if let Ok(credentials) = Credentials::from_docker_config(text) {
        for host in credentials.registries() {
            assert!(!host.contains('/'), "host {host:?} has a path");
        }
    }
});
