//! The platform's decider (high-level architecture §0, §4.2): VEX statements from every
//! provider's documents, and the consensus that says, per vulnerability and product, which
//! status the platform believes. Pure: no database, no network, no clock.

pub mod evaluate;
pub mod exploits;
pub mod license;
pub mod vex;
