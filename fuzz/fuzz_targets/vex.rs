//! VEX documents from providers: OpenVEX, CSAF and CycloneDX. The first byte picks the
//! format; a document that reads must read the same again (its statements are sorted and
//! deduplicated), and the consensus over its statements (status, votes and conflicts) must
//! not depend on their order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_policy::vex::consensus::{Claim, Trust, decide};
use stellaops_policy::vex::{Format, parse};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, document)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => Format::OpenVex,
        1 => Format::Csaf,
        _ => Format::CycloneDx,
    };
    let Ok(read) = parse(format, document) else {
        return;
    };
    assert_eq!(parse(format, document).as_ref(), Ok(&read));
    let claims: Vec<Claim> = read
        .statements
        .iter()
        .enumerate()
        .map(|(i, statement)| Claim {
            provider: format!("p{}", i % 3),
            document_id: read.id.clone(),
            document_version: read.version.clone(),
            statement: statement.clone(),
        })
        .collect();
    // The whole decision (votes, conflicts), not only its status, whatever the order: the
    // claims reversed and rotated by a count the input picks.
    let forward = decide(&claims, &Trust::default());
    let backward = decide(claims.iter().rev(), &Trust::default());
    assert_eq!(forward, backward);
    if !claims.is_empty() {
        let turn = usize::from(selector) % claims.len();
        let rotated = decide(
            claims.iter().cycle().skip(turn).take(claims.len()),
            &Trust::default(),
        );
        assert_eq!(forward, rotated);
    }
});
