//! The reliability suite: real PostgreSQL servers killed, blackholed, slowed and shut
//! down under load, with `#[resilient]` repositories in front of them.
//!
//! Each scenario (R1–R7, see RELIABILITY.md) starts its own throwaway server
//! ([`cluster::PgServer`]: a free loopback port, never the shared server on 5432), often
//! behind a fault-injecting proxy ([`proxy::Proxy`]), builds its own [`resilient::Runtime`]
//! with a named pool, runs a bounded load, and asserts its invariants. The scenarios run
//! one at a time (`common::SERIAL`) and print their measurements to stderr:
//!
//! ```text
//! cargo test --test reliability -- --nocapture
//! ```

#[path = "reliability/cluster.rs"]
mod cluster;
#[path = "reliability/common.rs"]
mod common;
#[path = "reliability/heap.rs"]
mod heap;
#[path = "reliability/proxy.rs"]
mod proxy;
#[path = "reliability/proxy_selftest.rs"]
mod proxy_selftest;
#[path = "support/mod.rs"]
mod support;

#[path = "reliability/r1_kill.rs"]
mod r1_kill;
#[path = "reliability/r2_blackhole.rs"]
mod r2_blackhole;
#[path = "reliability/r3_timeouts.rs"]
mod r3_timeouts;
#[path = "reliability/r4_bulkhead.rs"]
mod r4_bulkhead;
#[path = "reliability/r5_shutdown.rs"]
mod r5_shutdown;
#[path = "reliability/r6_lost_reply.rs"]
mod r6_lost_reply;
#[path = "reliability/r7_stampede.rs"]
mod r7_stampede;

/// Counts live heap bytes, for R4's "memory stays bounded".
#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;
