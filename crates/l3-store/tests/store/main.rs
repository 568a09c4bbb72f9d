//! Integration tests of the store on real files and real on-disk stores.

mod common;
mod fuzzish;
mod golden;
mod history;
mod props;
mod roundtrip;
mod safety;
