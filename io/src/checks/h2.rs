//! The checks that speak HTTP/2: gRPC (the standard `grpc.health.v1.Health/Check`, through
//! tonic's generated client) and H2PING (one PING on a fresh HTTP/2 connection, through h2).
//! Both connect with [`super::dial`], over TLS when asked, offering `h2` in ALPN.

use std::sync::{Arc, Mutex};

use muster_core::fsm::{Check, Health};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::tls::{Alpn, Verify};
use super::{dial, Io, Outcome};

/// A gRPC check of `GRPC` = `host:port[/service]`: `SERVING` is passing; any other status, or an
/// error, critical, in the words of Go's gRPC client.
pub async fn grpc(check: &Check) -> Outcome {
    let definition = &check.definition;
    let target = definition.grpc.as_str();
    let (server, service) = target.split_once('/').unwrap_or((target, ""));
    let verify = Verify { server_name: &definition.tls_server_name, skip: definition.tls_skip_verify };
    let tls = definition.grpc_use_tls.then_some((verify, Alpn::H2));
    let io = match dial(server, tls).await {
        Ok(io) => io,
        Err(error) => {
            return Outcome::new(
                Health::Critical,
                format!("rpc error: code = Unavailable desc = connection error: {error}"),
            )
        }
    };
    let scheme = if definition.grpc_use_tls { "https" } else { "http" };
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("{scheme}://{server}")) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            return Outcome::new(Health::Critical, format!("invalid gRPC target {server:?}: {error}"))
        }
    };
    // The connection is already made (so that its errors read as above): tonic is handed it
    // once, and does not reconnect within a run.
    let handed = Arc::new(Mutex::new(Some(io)));
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let io = handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        async move {
            io.map(hyper_util::rt::TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the check's connection was already used"))
        }
    });
    let channel = match endpoint.connect_with_connector(connector).await {
        Ok(channel) => channel,
        Err(error) => {
            return Outcome::new(Health::Critical, format!("rpc error: code = Unavailable desc = {error}"))
        }
    };
    let request = HealthCheckRequest { service: service.to_owned() };
    match HealthClient::new(channel).check(request).await {
        Ok(response) => match response.into_inner().status() {
            ServingStatus::Serving => Outcome::new(Health::Passing, format!("gRPC check {target}: success")),
            status => Outcome::new(
                Health::Critical,
                format!("gRPC {target} serving status: {}", status.as_str_name()),
            ),
        },
        Err(status) => Outcome::new(
            Health::Critical,
            format!("rpc error: code = {:?} desc = {}", status.code(), status.message()),
        ),
    }
}

/// An H2PING check of `H2PING` = `host:port`: an HTTP/2 connection (over TLS unless
/// `H2PingUseTLS` is false: then cleartext with prior knowledge) answering one PING.
pub async fn h2ping(check: &Check) -> Outcome {
    let definition = &check.definition;
    let target = definition.h2ping.as_str();
    let verify = Verify { server_name: &definition.tls_server_name, skip: definition.tls_skip_verify };
    let tls = definition.h2ping_use_tls.then_some((verify, Alpn::H2));
    let io: Box<dyn Io> = match dial(target, tls).await {
        Ok(io) => io,
        Err(error) => return Outcome::new(Health::Critical, format!("Failed to dial to {target}: {error}")),
    };
    let (_requests, connection) = match h2::client::handshake(io).await {
        Ok(handshake) => handshake,
        Err(error) => {
            return Outcome::new(Health::Critical, format!("Failed to create client connection {error}"))
        }
    };
    let mut connection = connection;
    let Some(mut ping_pong) = connection.ping_pong() else {
        return Outcome::new(Health::Critical, "HTTP2 ping failed: no ping handle");
    };
    // The connection is driven here beside the ping (it must be polled for the PONG to arrive).
    let ping = ping_pong.ping(h2::Ping::opaque());
    tokio::pin!(ping);
    let mut connection_done = false;
    loop {
        tokio::select! {
            biased;
            result = &mut ping => {
                return match result {
                    Ok(_) => Outcome::new(Health::Passing, "HTTP2 ping was successful"),
                    Err(error) => Outcome::new(Health::Critical, format!("HTTP2 ping failed: {error}")),
                };
            }
            result = &mut connection, if !connection_done => {
                connection_done = true;
                if let Err(error) = result {
                    return Outcome::new(Health::Critical, format!("HTTP2 ping failed: {error}"));
                }
            }
        }
    }
}
