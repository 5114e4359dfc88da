//! keel-jepsen: puts any etcd-v3 endpoint set (keel or etcd) through faults and judges what
//! clients saw.
//!
//! The checkers (`check`) are pure functions over recorded histories and carry their own
//! proptests; everything with processes, sockets and timers lives in `cluster`, `nemesis`,
//! `workload` and `run`.

pub mod check;
pub mod client;
pub mod cluster;
pub mod error;
pub mod history;
pub mod nemesis;
pub mod ports;
pub mod report;
pub mod run;
pub mod workload;

pub use error::Error;
