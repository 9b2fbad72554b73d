//! VEX tests: every format's published-example shapes, refusals, consensus tables.
mod exploits;
mod vex;
