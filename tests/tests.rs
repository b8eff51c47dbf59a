//! The integration tests, in one binary: every module runs against real
//! `redis-server` processes, real containers and the real proxy (see
//! ARCHITECTURE.md's Tests section). One binary links goose, axum,
//! plotters and testcontainers once instead of once per file.

mod common;

mod bgsave;
mod big_key;
mod capacity;
mod cluster_workloads;
mod cold_cache;
mod conductor;
mod connection_storm;
mod external;
mod external_proxy;
mod failover;
mod faults;
mod gate;
mod hostile_input;
mod hot_key;
mod layers;
mod ledger;
mod lock;
mod memory;
mod node_faults;
mod open_model;
mod orphans;
mod partition;
mod proxy_api;
mod proxy_compat;
mod queue;
mod ratelimit;
mod redis_error;
mod replica_reads;
mod replica_resync;
mod report_truth;
mod run_seam;
mod scenario_errors;
mod scenarios;
mod server_latency;
mod stampede;
mod stop_conditions;
mod target;
mod teardown;
mod throughput;
mod tls_acl;
mod topologies;
mod topology;
mod two_level;
mod write_behind;
