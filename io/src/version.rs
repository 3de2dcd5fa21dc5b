//! What `muster version` prints, and the versions muster reports to clients.

/// muster's own version.
pub const MUSTER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Consul release whose HTTP API, DNS interface and CLI muster reproduces. Clients that check
/// `Config.Version` (from `/v1/agent/self`) see this number.
pub const CONSUL_COMPATIBLE_VERSION: &str = "1.20.0";

/// The git revision the binary was built from (`unknown` outside a checkout).
pub const GIT_REVISION: &str = env!("MUSTER_GIT_REVISION");

/// The gossip protocol version spoken by default, and the range understood, as Consul prints
/// them.
pub const PROTOCOL_DEFAULT: u8 = 2;
/// The oldest gossip protocol version understood.
pub const PROTOCOL_MIN: u8 = 2;
/// The newest gossip protocol version understood.
pub const PROTOCOL_MAX: u8 = 3;

/// The text of `muster version`, in the shape of `consul version`.
pub fn version_text() -> String {
    format!(
        "muster v{MUSTER_VERSION} (Consul v{CONSUL_COMPATIBLE_VERSION} compatible)\n\
         Revision {GIT_REVISION}\n\
         Protocol {PROTOCOL_DEFAULT} spoken by default, understands {PROTOCOL_MIN} to \
         {PROTOCOL_MAX} (agent will automatically use protocol >2 when speaking to compatible \
         agents)\n"
    )
}
