//! Consul's metrics, recorded by the agent's `telemetry` module; nothing without it (the
//! simulator builds the Raft server and the consensus facade without the agent's telemetry).

#[cfg(feature = "agent")]
pub(crate) use crate::telemetry::{
    add_sample, answering_rpc, client_rpc, incr_counter, measure_since, set_gauge,
};

#[cfg(not(feature = "agent"))]
pub(crate) fn incr_counter(_name: &str, _labels: &[(&'static str, &str)], _n: f32) {}

#[cfg(not(feature = "agent"))]
pub(crate) fn set_gauge(_name: &str, _labels: &[(&'static str, &str)], _value: f32) {}

#[cfg(not(feature = "agent"))]
pub(crate) fn add_sample(_name: &str, _labels: &[(&'static str, &str)], _value: f32) {}

#[cfg(not(feature = "agent"))]
pub(crate) fn measure_since(_name: &str, _labels: &[(&'static str, &str)], _start: std::time::Instant) {}

#[cfg(not(feature = "agent"))]
pub(crate) fn client_rpc(_server: std::net::SocketAddr, _failed: bool) {}

#[cfg(not(feature = "agent"))]
pub(crate) async fn answering_rpc<F: std::future::Future>(answer: F) -> F::Output {
    answer.await
}
