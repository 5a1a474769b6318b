//! The scenarios of a run, one module each, and the loops they share.

pub mod hot_key;
pub mod load;
pub mod many_holds;
pub mod many_keys;
pub mod scaling;
pub mod uncontended;
