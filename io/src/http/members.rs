//! `/v1/agent/members` (`?wan`, `?filter`): the gossip pools as this agent sees them, in Consul's shape
//! (`../shared/reference/consul-behaviour.md` §1.5). Each pool's drive loop publishes a fresh
//! list whenever a member event changed it; the endpoint reads the latest.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use muster_core::tags::Tags;
use muster_core::Gossip;

use super::filter::Filter;
use super::{json, Api, Query};

/// A gossip pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// This datacenter's agents.
    Lan,
    /// Every datacenter's servers.
    Wan,
}

/// One member as `/v1/agent/members` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Its status (serf's number, 1 alive to 4 failed, is what the endpoint shows).
    pub status: muster_core::swim::Status,
}

/// The latest member lists of both pools.
#[derive(Debug)]
pub struct Members {
    lan: Mutex<Vec<Member>>,
    wan: Mutex<Vec<Member>>,
    /// Counts the lists published, for the tasks that follow membership.
    published: tokio::sync::watch::Sender<u64>,
}

impl Default for Members {
    fn default() -> Members {
        Members {
            lan: Mutex::default(),
            wan: Mutex::default(),
            published: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Members {
    /// A receiver that sees every later publication.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// The servers the LAN pool shows (this agent included, if it is one), alive or not.
    pub fn lan_servers(&self) -> Vec<(muster_core::servers::ServerInfo, muster_core::swim::Status)> {
        self.pool(Pool::Lan)
            .iter()
            .filter_map(|m| {
                Some((muster_core::servers::ServerInfo::from_member(&m.name, m.addr, &m.tags)?, m.status))
            })
            .collect()
    }

    /// The alive ones among them.
    pub fn alive_lan_servers(&self) -> Vec<muster_core::servers::ServerInfo> {
        self.lan_servers()
            .into_iter()
            .filter(|(_, status)| *status == muster_core::swim::Status::Alive)
            .map(|(server, _)| server)
            .collect()
    }

    fn pool(&self, pool: Pool) -> std::sync::MutexGuard<'_, Vec<Member>> {
        let list = match pool {
            Pool::Lan => &self.lan,
            Pool::Wan => &self.wan,
        };
        list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces a pool's list with `node`'s view: itself (with `own_tags`) and every member it
    /// knows, by name.
    pub fn publish(&self, pool: Pool, node: &Gossip, own_tags: &Bytes) {
        let decode = |meta: &[u8]| Tags::decode(meta).map(|tags| tags.0).unwrap_or_default();
        let me = Member {
            name: node.name().to_owned(),
            addr: node.advertise(),
            tags: decode(own_tags),
            status: node.status(),
        };
        let mut list: Vec<Member> = std::iter::once(me)
            .chain(node.members().map(|view| Member {
                name: view.node.name.clone(),
                addr: view.node.addr,
                tags: decode(&view.meta),
                status: view.status(),
            }))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        *self.pool(pool) = list;
        self.published.send_modify(|count| *count += 1);
    }

    /// A pool's latest list.
    pub fn list(&self, pool: Pool) -> Vec<Member> {
        self.pool(pool).clone()
    }
}

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/agent/members", get(members))
}

/// A member as `/v1/agent/members` and `/v1/agent/self` show it: serf's `Member`, with the
/// protocol ranges Consul 1.20's memberlist and serf report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MemberBody {
    name: String,
    addr: String,
    port: u16,
    tags: BTreeMap<String, String>,
    status: u8,
    protocol_min: u8,
    protocol_max: u8,
    protocol_cur: u8,
    delegate_min: u8,
    delegate_max: u8,
    delegate_cur: u8,
}

impl From<Member> for MemberBody {
    fn from(member: Member) -> MemberBody {
        MemberBody {
            name: member.name,
            addr: member.addr.ip().to_string(),
            port: member.addr.port(),
            tags: member.tags,
            status: member.status as u8,
            protocol_min: 1,
            protocol_max: 5,
            protocol_cur: 2,
            delegate_min: 2,
            delegate_max: 5,
            delegate_cur: 4,
        }
    }
}

/// `GET /v1/agent/members`, `?filter` applied to the members as Consul 1.20 does (after the
/// pool is chosen). `?segment` is Consul Enterprise's: like Consul CE, muster knows only `_all`
/// (what `consul members` sends) and the empty name, and refuses any other as CE does.
async fn members(State(api): State<Arc<Api>>, access: super::Access, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let pool = if query.go_bool("wan").flatten().unwrap_or(false) { Pool::Wan } else { Pool::Lan };
    if !matches!(query.get("segment").unwrap_or_default(), "" | "_all") {
        return match pool {
            Pool::Wan => super::HttpError::bad_request("Cannot provide a segment with wan=true"),
            Pool::Lan => {
                super::HttpError::internal("Network segments are not supported in this version of Consul")
            }
        }
        .into_response();
    }
    // Consul lists the members whose node the caller may read (`filterMembers`).
    let readable = |member: &Member| access.allows(muster_core::acl::Permission::NodeRead(&member.name));
    let shaped: Vec<MemberBody> =
        api.members.list(pool).into_iter().filter(readable).map(MemberBody::from).collect();
    let filtered = Filter::from_query(&query).and_then(|filter| match filter {
        None => Ok(None),
        Some(filter) => {
            let members = serde_json::to_value(&shaped).expect("members serialize");
            filter.apply_to(members).map(Some)
        }
    });
    match filtered {
        Ok(None) => json(&query, &shaped).into_response(),
        Ok(Some(kept)) => json(&query, &kept).into_response(),
        Err(error) => error.into_response(),
    }
}
