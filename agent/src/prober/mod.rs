//! Container probes as kubelet runs them: startup, liveness and readiness probes, each a
//! worker per container that checks it periodically (exec, httpGet, tcpSocket or grpc) and
//! turns results in a row into a verdict.
//!
//! - [`spec`]: a probe read from the pod spec with kubelet's defaults;
//! - [`worker`]: the pure state machine of one probe (ticks in, verdict changes out);
//! - [`check`]: the checks themselves and the Events their failures write;
//! - [`ProbeManager`]: one task per probe, the verdicts to query, and a stream of changes.

pub mod check;
mod manager;
pub mod spec;
pub mod worker;

pub use check::CheckOutcome;
pub use manager::{ProbeManager, ProbeUpdate};
pub use spec::{ProbeAction, ProbeKind, ProbeTiming};
pub use worker::{ProbeResult, ProbeWorker};
