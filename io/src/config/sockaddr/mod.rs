//! go-sockaddr templates, as Consul evaluates them in `bind_addr`, `client_addr`,
//! `advertise_addr*`, `addresses.*`, `serf_lan`/`serf_wan`, `recursors` and `retry_join`.
//!
//! Consul hands such a string to hashicorp/go-sockaddr's `template.Parse`, which runs it through
//! Go's `text/template` with the list of this machine's interface addresses as the dot and with
//! go-sockaddr's functions (`GetPrivateIP`, `include`, `sort`, `join`, ...) in scope. This module
//! implements the subset of `text/template` those templates use (text, `{{ }}` actions with
//! `{{-`/`-}}` trimming, comments, pipelines, parenthesised sub-pipelines, string, raw-string,
//! integer and boolean literals, and the dot) and re-implements go-sockaddr's functions over a
//! caller-supplied interface list, so that evaluation is a pure function and testable.
//!
//! Where go-sockaddr behaves surprisingly, this module follows go-sockaddr, because a template
//! that works with Consul must give the same addresses here:
//! - `sort "size"` puts *larger* networks (shorter prefixes) first: go-sockaddr compares netmasks.
//! - `include "flag" "a|b"` requires every interface flag listed (`up`, `broadcast`, ...) *or*
//!   any listed address property (`forwardable`, `loopback`, ...), and `down` matches everything.
//! - `include "type" "ipv4|ipv6"`, `"network" "a|b"` and `"rfc" "a|b"` test every alternative
//!   separately, so an address can appear once per alternative, and `exclude` lists an address
//!   once for each alternative it is outside of.
//! - RFC 6890 contains all of `2001::/16`, so most global IPv6 addresses are "private".
//! - `GetInterfaceIPs` (plural) does not drop non-forwardable addresses; `GetInterfaceIP` does.
//!
//! Not supported (each is a clear parse error, never a panic): `if`/`range`/`with` and other
//! control actions, variables, field access, Go's builtin functions (`printf`, `len`, ...),
//! floating-point and character literals, `unix` sockets (interfaces only carry IPs). Printing a
//! whole list (`{{ GetAllInterfaces }}`) is an execution error, because Go would print its
//! internal structure, which is never a usable address.

use std::net::IpAddr;

use muster_core::go_quote::quote_ascii;

use self::error::Fault;
use self::eval::{Eval, Value};
use self::parse::{parse, Node};

mod addr;
mod error;
mod eval;
mod functions;
mod parse;
mod rfc;
mod system;

pub use self::system::system_interfaces;

/// One address of one network interface, as go-sockaddr's IfAddr sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Kernel interface index; interfaces are listed in this order.
    pub index: u32,
    /// The address itself.
    pub addr: IpAddr,
    /// Prefix length of the address's network.
    pub prefix_len: u8,
    /// Interface flags.
    pub flags: Flags,
    /// Whether this address's interface holds the default route.
    pub default_route: bool,
}

/// Interface flags, as Go's `net.Flags`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// IFF_UP.
    pub up: bool,
    /// IFF_BROADCAST.
    pub broadcast: bool,
    /// IFF_LOOPBACK.
    pub loopback: bool,
    /// IFF_POINTOPOINT.
    pub point_to_point: bool,
    /// IFF_MULTICAST.
    pub multicast: bool,
}

/// A template that failed to parse or to execute.
///
/// Displays as Consul words it: `unable to parse template "<t>": <why>` or
/// `unable to execute sockaddr input "<t>": <why>`, where `<why>` follows Go's `text/template`
/// (`template: sockaddr.Parse:1: function "Foo" not defined`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Not a template: bad syntax, or beyond the subset and the limits this module takes.
    #[error("unable to parse template {}: {why}", quote_ascii(template))]
    Parse {
        /// The template.
        template: String,
        /// Go's `text/template` message, with the line.
        why: String,
    },
    /// A template that parsed but failed while running (a function refused its arguments).
    #[error("unable to execute sockaddr input {}: {why}", quote_ascii(template))]
    Execute {
        /// The template.
        template: String,
        /// Go's `text/template` message, with the line, column and failing node.
        why: String,
    },
}

/// Evaluates a template (text and `{{ }}` actions mixed, as Go's text/template; a string with no
/// `{{` is returned as is) against `interfaces`; the caller splits the output on whitespace.
pub fn render(template: &str, interfaces: &[IfAddr]) -> Result<String, TemplateError> {
    if !template.contains("{{") {
        return Ok(template.to_string());
    }
    let unparsable =
        |f: Fault| TemplateError::Parse { template: template.to_string(), why: f.render(template) };
    let failed =
        |f: Fault| TemplateError::Execute { template: template.to_string(), why: f.render(template) };
    if template.len() > TEMPLATE_LEN_MAX {
        let msg = format!("template is {} bytes long; the limit is {TEMPLATE_LEN_MAX}", template.len());
        return Err(unparsable(Fault { pos: 0, node: None, msg }));
    }
    let nodes = parse(template).map_err(unparsable)?;
    let eval = Eval::new(interfaces);
    let mut out = String::new();
    for node in &nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Action(pipeline) => match eval.pipeline(pipeline).map_err(failed)? {
                Value::Str(s) => out.push_str(&s),
                Value::Int(i) => out.push_str(&i.to_string()),
                Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                Value::List(_) => {
                    let fault = Fault {
                        pos: pipeline.pos(),
                        node: Some(pipeline.to_string()),
                        msg: "cannot print a list of interface addresses; pipe it to attr or join".into(),
                    };
                    return Err(failed(fault));
                }
            },
        }
    }
    Ok(out)
}

/// Go's template name in go-sockaddr, which appears in every error.
const TEMPLATE_NAME: &str = "sockaddr.Parse";

/// Characters `{{-`/`-}}` trim, as Go's lexer (`spaceChars`).
const GO_SPACE: &[char] = &[' ', '\t', '\r', '\n'];

/// Longest template accepted: config values are short, and this bounds every other cost.
const TEMPLATE_LEN_MAX: usize = 16 * 1024;

/// Most `{{ }}` actions in one template; real ones have one or two.
const ACTIONS_MAX: usize = 64;

/// Most commands in one pipeline (`a | b | c`); real ones have under ten.
const PIPELINE_COMMANDS_MAX: usize = 32;

/// Most operands in one command; go-sockaddr's functions take at most three.
const OPERANDS_MAX: usize = 16;

/// Deepest parenthesis nesting; bounds the parser's and evaluator's recursion.
const PAREN_DEPTH_MAX: usize = 8;

/// Compiled-size cap for a selector regexp, well above any interface-name pattern.
const REGEX_SIZE_MAX: usize = 1 << 20;

/// Go's `net.Flags` bit order, which `include "flag"` masks against.
const GO_FLAG_UP: u8 = 1 << 0;
const GO_FLAG_BROADCAST: u8 = 1 << 1;
const GO_FLAG_LOOPBACK: u8 = 1 << 2;
const GO_FLAG_POINT_TO_POINT: u8 = 1 << 3;
const GO_FLAG_MULTICAST: u8 = 1 << 4;

#[cfg(test)]
mod tests {
    use super::*;

    const UP: Flags =
        Flags { up: true, broadcast: false, loopback: false, point_to_point: false, multicast: false };
    const LOOPBACK: Flags = Flags { loopback: true, ..UP };
    const ETHERNET: Flags = Flags { broadcast: true, multicast: true, ..UP };

    fn ifa(name: &str, index: u32, addr: &str, prefix_len: u8, flags: Flags, default_route: bool) -> IfAddr {
        let addr = addr.parse().expect("fixture address");
        IfAddr { name: name.into(), index, addr, prefix_len, flags, default_route }
    }

    /// Listed as go-sockaddr lists them: interface by interface, in index order.
    fn fixture() -> Vec<IfAddr> {
        vec![
            ifa("lo", 1, "127.0.0.1", 8, LOOPBACK, false),
            ifa("lo", 1, "::1", 128, LOOPBACK, false),
            ifa("eth0", 2, "10.0.0.5", 24, ETHERNET, true),
            ifa("eth0", 2, "fe80::1", 64, ETHERNET, true),
            ifa("eth0", 2, "2001:db8::5", 64, ETHERNET, true),
            ifa("eth1", 3, "192.168.1.9", 24, UP, false),
            ifa("docker0", 4, "172.17.0.1", 16, UP, false),
            // 203.0.113/24 is in RFC 6890 but not forwardable: neither private nor public.
            ifa("eth2", 5, "203.0.113.7", 24, UP, false),
            ifa("eth3", 6, "198.100.50.2", 24, UP, false),
        ]
    }

    const ALL: &str =
        "127.0.0.1 ::1 10.0.0.5 fe80::1 2001:db8::5 192.168.1.9 172.17.0.1 203.0.113.7 198.100.50.2";

    fn ok(template: &str) -> String {
        render(template, &fixture()).unwrap_or_else(|e| panic!("{template}: {e}"))
    }

    fn err(template: &str) -> String {
        match render(template, &fixture()) {
            Ok(out) => panic!("{template}: expected an error, got {out:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn joined(pipeline: &str) -> String {
        ok(&format!("{{{{ {pipeline} | join \"address\" \" \" }}}}"))
    }

    #[test]
    fn sources() {
        assert_eq!(ok("{{ GetPrivateIP }}"), "10.0.0.5");
        assert_eq!(ok("{{ GetPublicIP }}"), "198.100.50.2");
        assert_eq!(ok("{{ GetPrivateIPs }}"), "172.17.0.1 10.0.0.5 192.168.1.9");
        assert_eq!(ok("{{ GetPublicIPs }}"), "198.100.50.2");
        assert_eq!(joined("GetAllInterfaces"), ALL);
        assert_eq!(joined("."), ALL);
        assert_eq!(joined("GetDefaultInterfaces"), "10.0.0.5 fe80::1 2001:db8::5");
        // Default route first, then IPv4 before IPv6, then larger networks first.
        assert_eq!(joined("GetPrivateInterfaces"), "10.0.0.5 172.17.0.1 192.168.1.9");
        assert_eq!(joined("GetPublicInterfaces"), "198.100.50.2");
        assert_eq!(ok("{{ GetInterfaceIP \"eth0\" }}"), "10.0.0.5");
        assert_eq!(ok("{{ GetInterfaceIP \"lo\" }}"), "");
        assert_eq!(ok("{{ GetInterfaceIP \"^eth[12]$\" }}"), "192.168.1.9");
        assert_eq!(ok("{{ GetInterfaceIP \"nothing\" }}"), "");
        assert_eq!(ok("{{ GetInterfaceIPs \"eth0\" }}"), "10.0.0.5 fe80::1 2001:db8::5");
        assert_eq!(ok("{{ GetInterfaceIPs \"lo\" }}"), "127.0.0.1 ::1");
    }

    #[test]
    fn sources_without_addresses_or_default_route() {
        let lo_only: Vec<IfAddr> = fixture().into_iter().filter(|a| a.name == "lo").collect();
        assert_eq!(render("{{ GetPrivateIP }}", &lo_only).as_deref(), Ok(""));
        assert_eq!(render("{{ GetPublicIPs }}", &lo_only).as_deref(), Ok(""));
        let e =
            render("{{ GetDefaultInterfaces | attr \"address\" }}", &lo_only).expect_err("no default route");
        assert!(
            e.to_string().ends_with("error calling GetDefaultInterfaces: no default interface found"),
            "{e}"
        );
        assert_eq!(render("{{ GetAllInterfaces | attr \"address\" }}", &[]).as_deref(), Ok(""));
    }

    #[test]
    fn consul_documentation_examples() {
        assert_eq!(
            ok("{{ GetPrivateInterfaces | exclude \"type\" \"ipv6\" | join \"address\" \" \" }}"),
            "10.0.0.5 172.17.0.1 192.168.1.9"
        );
        assert_eq!(
            ok("{{ GetAllInterfaces | include \"flags\" \"loopback\" | join \"address\" \" \" }}"),
            "127.0.0.1 ::1"
        );
        assert_eq!(
            ok(
                r#"{{ GetAllInterfaces | include "name" "^eth" | include "flags" "forwardable|up" | attr "address" }}"#
            ),
            "10.0.0.5"
        );
        assert_eq!(
            ok("{{ GetPrivateInterfaces | include \"network\" \"10.0.0.0/8\" | attr \"address\" }}"),
            "10.0.0.5"
        );
    }

    #[test]
    fn include_exclude_address_name_port() {
        assert_eq!(joined("GetAllInterfaces | include \"address\" `^192\\.`"), "192.168.1.9");
        assert_eq!(joined("GetAllInterfaces | include \"address\" \"/64$\""), "fe80::1 2001:db8::5");
        assert_eq!(
            joined("GetAllInterfaces | exclude \"address\" \":\""),
            "127.0.0.1 10.0.0.5 192.168.1.9 172.17.0.1 203.0.113.7 198.100.50.2"
        );
        assert_eq!(
            joined("GetAllInterfaces | include \"name\" \"^(lo|docker0)$\""),
            "127.0.0.1 ::1 172.17.0.1"
        );
        assert_eq!(joined("GetAllInterfaces | exclude \"NAME\" \"^eth\""), "127.0.0.1 ::1 172.17.0.1");
        assert_eq!(joined("GetAllInterfaces | include \"port\" \"^0$\""), ALL);
        assert_eq!(joined("GetAllInterfaces | exclude \"port\" \"0\""), "");
        assert_eq!(joined(r#"GetAllInterfaces | include "name" `(?i)^DOCKER\d$`"#), "172.17.0.1");
        assert!(err("{{ GetAllInterfaces | include \"name\" \"(\" }}")
            .contains("unable to compile name regexp \"(\""));
    }

    #[test]
    fn include_exclude_flags() {
        let eth0 = "10.0.0.5 fe80::1 2001:db8::5";
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"broadcast\""), eth0);
        assert_eq!(joined("GetAllInterfaces | include \"flags\" \"up|broadcast\""), eth0);
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"multicast\""), eth0);
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"link-local unicast\""), "fe80::1");
        assert_eq!(
            joined("GetAllInterfaces | include \"flag\" \"global unicast\""),
            "10.0.0.5 2001:db8::5 192.168.1.9 172.17.0.1 203.0.113.7 198.100.50.2"
        );
        assert_eq!(
            joined("GetAllInterfaces | include \"flag\" \"forwardable\""),
            "10.0.0.5 192.168.1.9 172.17.0.1 198.100.50.2"
        );
        assert_eq!(
            joined("GetAllInterfaces | exclude \"flag\" \"loopback\""),
            &ALL["127.0.0.1 ::1 ".len()..]
        );
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"unspecified|point-to-point\""), "");
        assert_eq!(
            joined("GetAllInterfaces | include \"flag\" \"link-local multicast|interface-local multicast\""),
            ""
        );
        // go-sockaddr clears a bit it never set, so "down" asks for nothing and keeps everything.
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"down\""), ALL);
        assert!(err("{{ GetAllInterfaces | include \"flag\" \"bogus\" }}")
            .ends_with("unknown interface flag: \"bogus\""));
    }

    #[test]
    fn include_exclude_network_rfc_size_type() {
        assert_eq!(
            joined("GetAllInterfaces | include \"network\" \"10.0.0.0/8|192.168.0.0/16\""),
            "10.0.0.5 192.168.1.9"
        );
        assert_eq!(joined("GetAllInterfaces | include \"network\" \"fe80::/10\""), "fe80::1");
        // A /16 interface network is not inside the /32 host network.
        assert_eq!(joined("GetAllInterfaces | include \"network\" \"172.17.0.1\""), "");
        assert_eq!(
            joined("GetAllInterfaces | exclude \"network\" \"10.0.0.0/8\""),
            ALL.replace("10.0.0.5 ", "")
        );
        assert!(err("{{ GetAllInterfaces | include \"network\" \"nope\" }}")
            .contains("unable to create an IP address from \"nope\""));

        assert_eq!(joined("GetAllInterfaces | include \"rfc\" \"1918\""), "10.0.0.5 192.168.1.9 172.17.0.1");
        assert_eq!(joined("GetAllInterfaces | include \"rfc\" \"5737\""), "203.0.113.7");
        assert_eq!(joined("GetAllInterfaces | include \"rfcs\" \"3927|4291\""), "::1 fe80::1");
        assert_eq!(joined("GetAllInterfaces | include \"rfc\" \"6598\""), "");
        assert_eq!(joined("GetAllInterfaces | exclude \"rfc\" \"6890\""), "198.100.50.2");
        assert!(err("{{ GetAllInterfaces | include \"rfc\" \"1234\" }}")
            .ends_with("unable to lookup RFC number \"1234\": unsupported RFC 1234"));
        assert!(err("{{ GetAllInterfaces | include \"rfc\" \"x\" }}")
            .contains("unable to parse RFC number \"x\""));

        assert_eq!(
            joined("GetAllInterfaces | include \"size\" \"24\""),
            "10.0.0.5 192.168.1.9 203.0.113.7 198.100.50.2"
        );
        // As in go-sockaddr, a size beyond 32 fails on any IPv4 address in the list.
        assert!(err("{{ GetAllInterfaces | include \"size\" \"64\" }}")
            .ends_with("out of bounds for IPv4 address: 64"));
        assert_eq!(
            joined("GetAllInterfaces | include \"type\" \"ipv6\" | include \"size\" \"64\""),
            "fe80::1 2001:db8::5"
        );
        assert!(err("{{ GetAllInterfaces | include \"size\" \"33\" }}")
            .ends_with("mask size out of bounds for IPv4 address: 33"));

        assert_eq!(joined("GetAllInterfaces | include \"type\" \"IPv6\""), "::1 fe80::1 2001:db8::5");
        assert_eq!(
            joined("GetAllInterfaces | exclude \"type\" \"ipv6\""),
            "127.0.0.1 10.0.0.5 192.168.1.9 172.17.0.1 203.0.113.7 198.100.50.2"
        );
        assert_eq!(joined("GetAllInterfaces | include \"type\" \"ip\""), ALL);
        assert_eq!(joined("GetAllInterfaces | include \"type\" \"unix\""), "");
        assert!(err("{{ GetAllInterfaces | include \"type\" \"bogus\" }}")
            .ends_with("unsupported type \"bogus\" \"bogus\""));
    }

    #[test]
    fn unknown_selector() {
        let e = err("{{ GetAllInterfaces | include \"bogus\" \"x\" }}");
        assert_eq!(
            e,
            "unable to execute sockaddr input \"{{ GetAllInterfaces | include \\\"bogus\\\" \\\"x\\\" }}\": \
             template: sockaddr.Parse:1:22: executing \"sockaddr.Parse\" at <include \"bogus\" \"x\">: \
             error calling include: invalid include selector \"bogus\""
        );
        assert!(err("{{ GetAllInterfaces | exclude \"bogus\" \"x\" }}")
            .ends_with("invalid exclude selector \"bogus\""));
    }

    #[test]
    fn sort_orders() {
        let v4 = "GetAllInterfaces | include \"type\" \"ipv4\"";
        assert_eq!(
            joined(&format!("{v4} | sort \"address\"")),
            "10.0.0.5 127.0.0.1 172.17.0.1 192.168.1.9 198.100.50.2 203.0.113.7"
        );
        assert_eq!(
            joined(&format!("{v4} | sort \"-address\"")),
            "203.0.113.7 198.100.50.2 192.168.1.9 172.17.0.1 127.0.0.1 10.0.0.5"
        );
        assert_eq!(
            joined(&format!("{v4} | sort \"private,+address\"")),
            "10.0.0.5 127.0.0.1 172.17.0.1 192.168.1.9 203.0.113.7 198.100.50.2"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \"name\""),
            "172.17.0.1 10.0.0.5 fe80::1 2001:db8::5 192.168.1.9 203.0.113.7 198.100.50.2 127.0.0.1 ::1"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \"-name\""),
            "127.0.0.1 ::1 198.100.50.2 203.0.113.7 192.168.1.9 10.0.0.5 fe80::1 2001:db8::5 172.17.0.1"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \"type,size\""),
            "127.0.0.1 172.17.0.1 10.0.0.5 192.168.1.9 203.0.113.7 198.100.50.2 fe80::1 2001:db8::5 ::1"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \" -type , -size \""),
            "::1 fe80::1 2001:db8::5 10.0.0.5 192.168.1.9 203.0.113.7 198.100.50.2 172.17.0.1 127.0.0.1"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \"default,port,name\""),
            "10.0.0.5 fe80::1 2001:db8::5 172.17.0.1 192.168.1.9 203.0.113.7 198.100.50.2 127.0.0.1 ::1"
        );
        assert!(err("{{ GetAllInterfaces | sort \"bogus\" }}").ends_with("unknown sort type: \"bogus\""));
    }

    #[test]
    fn unique_limit_offset() {
        assert_eq!(
            ok("{{ GetAllInterfaces | unique \"name\" | join \"name\" \" \" }}"),
            "lo eth0 eth1 docker0 eth2 eth3"
        );
        assert_eq!(joined("GetAllInterfaces | unique \"address\""), ALL);
        assert!(err("{{ GetAllInterfaces | unique \"size\" }}")
            .ends_with("unsupported unique constraint \"size\""));
        assert_eq!(joined("GetAllInterfaces | limit 2"), "127.0.0.1 ::1");
        assert_eq!(joined("GetAllInterfaces | limit 0"), "");
        assert_eq!(joined("GetAllInterfaces | limit 100"), ALL);
        assert_eq!(joined("GetAllInterfaces | offset 7"), "203.0.113.7 198.100.50.2");
        assert_eq!(joined("GetAllInterfaces | offset -1"), "198.100.50.2");
        assert_eq!(joined("GetAllInterfaces | offset 2 | limit 1"), "10.0.0.5");
        assert!(err("{{ GetAllInterfaces | offset 10 }}")
            .ends_with("offset (10) exceeds the number of interfaces (9)"));
        assert!(err("{{ GetAllInterfaces | limit -1 }}")
            .ends_with("at <-1>: expected unsigned integer; found -1"));
        assert!(err("{{ GetAllInterfaces | limit \"1\" }}")
            .ends_with("at <\"1\">: expected unsigned integer; found \"1\""));
    }

    #[test]
    fn attributes() {
        let eth0 = |attr: &str| ok(&format!("{{{{ GetDefaultInterfaces | attr \"{attr}\" }}}}"));
        for (attr, want) in [
            ("address", "10.0.0.5"),
            ("ADDRESS", "10.0.0.5"),
            ("name", "eth0"),
            ("flags", "up|broadcast|multicast"),
            ("network", "10.0.0.0"),
            ("netmask", "255.255.255.0"),
            ("mask_bits", "24"),
            ("size", "256"),
            ("broadcast", "10.0.0.255"),
            ("first_usable", "10.0.0.1"),
            ("last_usable", "10.0.0.254"),
            ("host", "10.0.0.5"),
            ("port", "0"),
            ("type", "IPv4"),
            ("string", "10.0.0.5/24"),
            ("hex", "0a000005"),
            ("binary", "00001010000000000000000000000101"),
            ("octets", "10 0 0 5"),
            ("uint32", "167772165"),
        ] {
            assert_eq!(eth0(attr), want, "{attr}");
        }
        let v6 = |attr: &str| {
            ok(&format!("{{{{ GetAllInterfaces | include \"address\" \"db8\" | attr \"{attr}\" }}}}"))
        };
        for (attr, want) in [
            ("address", "2001:db8::5"),
            ("network", "2001:db8::"),
            ("netmask", "ffff:ffff:ffff:ffff::"),
            ("size", "18446744073709551616"),
            ("first_usable", "2001:db8::"),
            ("last_usable", "2001:db8::ffff:ffff:ffff:ffff"),
            ("type", "IPv6"),
            ("string", "2001:db8::5/64"),
            ("hex", "20010db8000000000000000000000005"),
            ("uint128", "42540766411282592856903984951653826565"),
        ] {
            assert_eq!(v6(attr), want, "{attr}");
        }
        assert_eq!(ok("{{ GetAllInterfaces | include \"name\" \"lo\" | attr \"string\" }}"), "127.0.0.1/8");
        assert_eq!(ok("{{ GetAllInterfaces | include \"type\" \"ipv6\" | attr \"string\" }}"), "::1");
        assert_eq!(ok("{{ GetAllInterfaces | include \"name\" \"none\" | attr \"address\" }}"), "");
        assert_eq!(ok("{{ GetPrivateInterfaces | join \"name\" \",\" }}"), "eth0,docker0,eth1");
        assert!(err("{{ GetDefaultInterfaces | attr \"bogus\" }}")
            .ends_with("unsupported attribute name \"bogus\""));
        assert!(err("{{ GetAllInterfaces | include \"address\" \"db8\" | attr \"broadcast\" }}")
            .contains("unsupported attribute"));
        assert!(err("{{ GetPrivateIP | attr \"address\" }}")
            .ends_with("unable to obtain attribute address from type string (10.0.0.5)"));
    }

    #[test]
    fn math() {
        let eth0 = "GetPrivateInterfaces | include \"name\" \"eth0\"";
        assert_eq!(
            ok(&format!("{{{{ {eth0} | math \"address\" \"+5\" | attr \"address\" }}}}")),
            "10.0.0.10"
        );
        assert_eq!(
            ok(&format!("{{{{ {eth0} | math \"address\" \"-6\" | attr \"address\" }}}}")),
            "9.255.255.255"
        );
        assert_eq!(ok(&format!("{{{{ {eth0} | math \"network\" \"+2\" | attr \"address\" }}}}")), "10.0.0.2");
        assert_eq!(
            ok(&format!("{{{{ {eth0} | math \"network\" \"-1\" | attr \"address\" }}}}")),
            "10.0.0.255"
        );
        assert_eq!(ok(&format!("{{{{ {eth0} | math \"mask\" \"16\" | attr \"string\" }}}}")), "10.0.0.0/16");
        let db8 = "GetAllInterfaces | include \"address\" \"db8\"";
        assert_eq!(
            ok(&format!("{{{{ {db8} | math \"address\" \"+1\" | attr \"address\" }}}}")),
            "2001:db8::6"
        );
        assert_eq!(
            ok(&format!("{{{{ {db8} | math \"network\" \"+1\" | attr \"address\" }}}}")),
            "2001:db8::1"
        );
        assert_eq!(
            ok(&format!("{{{{ {db8} | math \"network\" \"-1\" | attr \"address\" }}}}")),
            "2001:db8::ffff:ffff:ffff:ffff"
        );
        assert!(err(&format!("{{{{ {eth0} | math \"address\" \"5\" }}}}"))
            .ends_with("sign (+/-) is required for operation \"address\""));
        assert!(err(&format!("{{{{ {eth0} | math \"mask\" \"33\" }}}}")).contains("must be between 0 and 32"));
        assert!(err(&format!("{{{{ {eth0} | math \"bogus\" \"+1\" }}}}"))
            .ends_with("unsupported math operation: \"bogus\""));
    }

    #[test]
    fn template_syntax() {
        for plain in ["", "10.0.0.1", "abc}}", "{ {x} }", "unix:///tmp/consul.sock"] {
            assert_eq!(ok(plain), plain);
        }
        assert_eq!(ok("a {{ GetPrivateIP }} b"), "a 10.0.0.5 b");
        assert_eq!(ok("a \n {{- GetPrivateIP -}} \t b"), "a10.0.0.5b");
        assert_eq!(ok("{{/* a comment */}}c{{- /* another */ -}} d"), "cd");
        assert_eq!(ok("{{ GetInterfaceIP \"eth\\x30\" }}"), "10.0.0.5");
        assert_eq!(ok("{{ GetInterfaceIP `eth0` }}"), "10.0.0.5");
        assert_eq!(ok("{{ \"tab\\there \\\"q\\\" \\\\ \\u00e9\" }}"), "tab\there \"q\" \\ é");
        assert_eq!(ok("{{ attr \"address\" (GetPrivateInterfaces) }}"), "10.0.0.5");
        assert_eq!(ok("{{ join \"address\" \" \" GetPublicInterfaces }}"), "198.100.50.2");
        assert_eq!(ok("{{ (GetPrivateInterfaces | limit 1) | attr \"address\" }}"), "10.0.0.5");
        assert_eq!(ok("{{ GetAllInterfaces | offset 0x8 | attr \"address\" }}"), "198.100.50.2");
        assert_eq!(ok("{{ 3 }} {{ -4 }} {{ \"x\" }} {{ true }}"), "3 -4 x true");
        assert_eq!(ok("{{ GetPrivateIP | }}"), "10.0.0.5");
        assert_eq!(ok("{{\n  GetPrivateInterfaces\n  | attr \"address\"\n}}"), "10.0.0.5");
        assert_eq!(ok("{{GetPrivateIP}}{{GetPublicIP}}"), "10.0.0.5198.100.50.2");
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            err("{{ Foo }}"),
            "unable to parse template \"{{ Foo }}\": template: sockaddr.Parse:1: function \"Foo\" not defined"
        );
        assert_eq!(
            err("{{ GetPrivateIP"),
            "unable to parse template \"{{ GetPrivateIP\": template: sockaddr.Parse:1: unclosed action"
        );
        assert!(err("a\n{{ Foo }}").ends_with("template: sockaddr.Parse:2: function \"Foo\" not defined"));
        for (template, why) in [
            ("{{ }}", "missing value for command"),
            ("{{ | }}", "unexpected \"|\" in command"),
            ("{{ ( GetAllInterfaces }}", "unclosed left paren"),
            ("{{ GetAllInterfaces ) }}", "unexpected \")\" in command"),
            ("{{ GetAllInterfaces | \"x\" }}", "non executable command in pipeline stage 2"),
            ("{{ \"abc }}", "unterminated quoted string"),
            ("{{ `abc }}", "unterminated raw quoted string"),
            ("{{ \"a\\q\" }}", "invalid syntax"),
            ("{{ 99999999999999999999 }}", "integer overflow: \"99999999999999999999\""),
            ("{{ 1.5 }}", "floating-point numbers are not supported"),
            ("{{ 'a' }}", "character constants are not supported"),
            ("{{ range . }}x{{ end }}", "\"range\" is not supported in sockaddr templates"),
            ("{{ if true }}x{{ end }}", "\"if\" is not supported in sockaddr templates"),
            ("{{ $x := 1 }}", "variables are not supported"),
            ("{{ .Name }}", "field access is not supported"),
            ("{{ printf \"%s\" \"x\" }}", "function \"printf\" is not supported in sockaddr templates"),
            ("{{ GetPrivateIP @ }}", "unrecognized character in action: U+0040 '@'"),
            ("{{/* x }}", "unclosed comment"),
            ("{{/* x */ }}", "comment ends before closing delimiter"),
        ] {
            let e = err(template);
            assert!(e.starts_with("unable to parse template "), "{template}: {e}");
            assert!(e.ends_with(why), "{template}: {e}");
        }
    }

    #[test]
    fn execution_errors() {
        assert!(err("{{ GetInterfaceIP }}").ends_with(
            "template: sockaddr.Parse:1:3: executing \"sockaddr.Parse\" at <GetInterfaceIP>: \
             wrong number of args for GetInterfaceIP: want 1 got 0"
        ));
        assert!(err("{{ GetInterfaceIP 3 }}").ends_with(
            "template: sockaddr.Parse:1:18: executing \"sockaddr.Parse\" at <3>: expected string; found 3"
        ));
        assert!(err("{{ GetAllInterfaces | join \"a\" }}")
            .ends_with("wrong number of args for join: want 3 got 2"));
        assert!(err("{{ \"x\" \"y\" }}").ends_with("at <\"x\">: can't give argument to non-function \"x\""));
        assert!(err("{{ GetPrivateIP | limit 1 }}")
            .ends_with("wrong type for value; expected sockaddr.IfAddrs; got string"));
        let e = err("{{ GetAllInterfaces }}");
        assert!(e.starts_with("unable to execute sockaddr input \"{{ GetAllInterfaces }}\": "), "{e}");
        assert!(e.contains("cannot print a list"), "{e}");
    }

    #[test]
    fn limits() {
        let long = format!("{{{{ GetPrivateIP }}}}{}", " ".repeat(TEMPLATE_LEN_MAX));
        assert!(err(&long).contains("the limit is"));
        let many = format!("{{{{ GetAllInterfaces{} }}}}", " | limit 9".repeat(PIPELINE_COMMANDS_MAX));
        assert!(err(&many).contains("commands in a pipeline"));
        let deep = format!(
            "{{{{ {}GetPrivateIP{} }}}}",
            "(".repeat(PAREN_DEPTH_MAX + 1),
            ")".repeat(PAREN_DEPTH_MAX + 1)
        );
        assert!(err(&deep).contains("nested deeper"));
        let shallow =
            format!("{{{{ {}GetPrivateIP{} }}}}", "(".repeat(PAREN_DEPTH_MAX), ")".repeat(PAREN_DEPTH_MAX));
        assert_eq!(ok(&shallow), "10.0.0.5");
        assert!(err(&"{{ 1 }}".repeat(ACTIONS_MAX + 1)).contains("actions"));
    }

    /// Every prefix of every template above, plus a few mutations, either renders or errors.
    #[test]
    fn truncated_and_mutated_templates_never_panic() {
        let seeds = [
            r#"{{ GetAllInterfaces | include "name" "^eth" | include "flags" "forwardable|up" | attr "address" }}"#,
            "{{- /* c */ -}} {{ (GetPrivateInterfaces | sort \"-size,name\") | math \"network\" \"-1\" | join `a` \"\\x41\\u00e9\" -}}",
            r#"{{ GetAllInterfaces | offset -2 | limit 0x1 | unique "name" | exclude "rfc" "6890|1918" | attr "octets" }}"#,
            r#"{{ attr "address" (GetAllInterfaces | include "network" "::/0|0.0.0.0/0") }} {{ GetInterfaceIPs "é" }}"#,
        ];
        let interfaces = fixture();
        for seed in seeds {
            for (i, _) in seed.char_indices() {
                let _ = render(&seed[..i], &interfaces);
                let _ = render(&seed[i..], &interfaces);
                for insert in ["}}", "{{", "\"", "(", ")", "|", "-", "`", " -}}"] {
                    let mutated = format!("{}{insert}{}", &seed[..i], &seed[i..]);
                    let _ = render(&mutated, &interfaces);
                }
            }
        }
    }

    #[test]
    fn odd_interface_values_do_not_panic() {
        let odd = vec![
            ifa("x", 0, "0.0.0.0", 0, Flags::default(), true),
            ifa("y", 0, "::", 0, Flags::default(), false),
            ifa("z", 0, "255.255.255.255", 200, Flags::default(), false),
            ifa("w", 0, "::ffff:1.2.3.4", 255, Flags::default(), false),
        ];
        for attr in [
            "address",
            "size",
            "network",
            "netmask",
            "first_usable",
            "last_usable",
            "broadcast",
            "string",
            "uint128",
        ] {
            let _ = render(&format!("{{{{ GetAllInterfaces | join \"{attr}\" \" \" }}}}"), &odd);
        }
        for op in [
            "address \"+1\"",
            "address \"-1\"",
            "network \"+1\"",
            "network \"-1\"",
            "network \"-0\"",
            "mask \"0\"",
        ] {
            let _ = render(&format!("{{{{ GetAllInterfaces | math {op} | join \"string\" \" \" }}}}"), &odd);
        }
        assert_eq!(render("{{ GetAllInterfaces | attr \"size\" }}", &odd).as_deref(), Ok("4294967296"));
        assert_eq!(
            render("{{ GetAllInterfaces | offset 1 | attr \"size\" }}", &odd).as_deref(),
            Ok("340282366920938463463374607431768211456")
        );
        assert_eq!(
            render("{{ GetAllInterfaces | offset 3 | attr \"address\" }}", &odd).as_deref(),
            Ok("1.2.3.4")
        );
        let _ = render(
            r#"{{ GetPrivateIPs }} {{ GetPublicIPs }} {{ GetPrivateIP }} {{ GetDefaultInterfaces | sort "private,address,default" | join "address" " " }}"#,
            &odd,
        );
    }
}
