//! Health-check timing, sans-IO (issue 8; `../shared/reference/consul-behaviour.md` §3).
//!
//! Today: what an expired TTL check says. A TTL check is passed, warned or failed by its
//! application; if no update arrives within its TTL (the agent keeps one
//! [`Deadlines`](crate::deadlines::Deadlines) entry per check), the agent marks it critical
//! with Consul's "TTL expired" output.

/// The output Consul gives a TTL check that expired, keeping the last output it had.
pub fn ttl_expired_output(last_output: &str) -> String {
    if last_output.is_empty() {
        "TTL expired".to_owned()
    } else {
        format!("TTL expired (last output before timeout follows): {last_output}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_check_says_so_and_keeps_its_last_output() {
        assert_eq!(ttl_expired_output(""), "TTL expired");
        assert_eq!(ttl_expired_output("ok"), "TTL expired (last output before timeout follows): ok");
    }
}
