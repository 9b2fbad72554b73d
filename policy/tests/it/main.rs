//! VEX tests: every format's published-example shapes, refusals, consensus tables.
mod evaluate;
mod exploits;
mod license;
mod vex;
