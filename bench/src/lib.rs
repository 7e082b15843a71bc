//! qpc-bench: the load generator that measures the qpc relay side by side
//! with Mosquitto, the MQTT broker a router owner would otherwise install.
//!
//! Both relays run as child processes on loopback and see the same
//! workloads (same message counts, sizes and concurrency): store-and-forward
//! to offline recipients, latency to online recipients, idle connections and
//! handshakes. The server's memory, CPU time and disk use are read from
//! /proc and its data directory. Nothing here ships in a router binary.

pub mod callgrind;
pub mod files;
pub mod mqtt_load;
pub mod procfs;
pub mod qpc_load;
pub mod report;
pub mod servers;
pub mod suite;
pub mod util;

/// What any step of the harness fails with: a message for the operator.
pub type BoxError = Box<dyn std::error::Error>;
pub type Result<T> = std::result::Result<T, BoxError>;
