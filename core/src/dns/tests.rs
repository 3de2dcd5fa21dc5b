use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, RecordType};

use super::*;
use crate::fsm::{Check, Command, Fsm, Node, Register, Service, Weights};

/// A catalog: `web` on n1 (passing, tag rails), n2 (passing), n3 (warning, tag rails), n4
/// (critical), and on n5 with an address of its own; n1 is a server (`consul` service) and
/// carries node meta.
fn catalog() -> Fsm {
    let mut fsm = Fsm::new();
    let mut index = 0;
    let mut register = |fsm: &mut Fsm, node: Node, service: Option<Service>, checks: Vec<Check>| {
        index += 1;
        let command =
            Command::Register(Box::new(Register { node, skip_node_update: false, service, checks }));
        fsm.apply_command(index, 0, &command);
    };
    let node = |name: &str, address: &str| Node {
        node: name.into(),
        address: address.into(),
        datacenter: "dc1".into(),
        ..Node::default()
    };
    let web = |tags: &[&str], address: &str| Service {
        id: "web".into(),
        service: "web".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        address: address.into(),
        port: 8080,
        weights: Weights { passing: 10, warning: 1 },
        ..Service::default()
    };
    let check = |node: &str, status: Health| Check {
        node: node.into(),
        check_id: "web-check".into(),
        name: "web-check".into(),
        status,
        service_id: "web".into(),
        ..Check::default()
    };
    let mut n1 = node("n1", "10.0.0.1");
    n1.meta = BTreeMap::from([
        ("rack".to_owned(), "r1".to_owned()),
        ("rfc1035-raw".to_owned(), "plain".to_owned()),
    ]);
    register(&mut fsm, n1.clone(), Some(web(&["rails"], "")), vec![check("n1", Health::Passing)]);
    let consul = Service { id: "consul".into(), service: "consul".into(), port: 8300, ..Service::default() };
    register(&mut fsm, n1, Some(consul), vec![]);
    register(&mut fsm, node("n2", "10.0.0.2"), Some(web(&[], "")), vec![check("n2", Health::Passing)]);
    register(&mut fsm, node("n3", "10.0.0.3"), Some(web(&["rails"], "")), vec![check("n3", Health::Warning)]);
    register(&mut fsm, node("n4", "10.0.0.4"), Some(web(&[], "")), vec![check("n4", Health::Critical)]);
    register(
        &mut fsm,
        node("n5", "10.0.0.5"),
        Some(web(&[], "192.168.1.5")),
        vec![check("n5", Health::Passing)],
    );
    register(&mut fsm, node("web.dotted", "10.0.0.9"), None, vec![]);
    register(&mut fsm, node("six", "fd00::6"), None, vec![]);
    fsm
}

/// Registers `service` (its ID the same, on `port`) on `node` at `node_address`, the service
/// at `service_address` (empty: the node's), as entry `index`; no checks.
fn register(
    fsm: &mut Fsm,
    index: u64,
    (node, node_address): (&str, &str),
    (service, service_address, port): (&str, &str, u16),
) {
    let command = Command::Register(Box::new(Register {
        node: Node { node: node.into(), address: node_address.into(), ..Node::default() },
        skip_node_update: false,
        service: Some(Service {
            id: service.into(),
            service: service.into(),
            address: service_address.into(),
            port,
            ..Service::default()
        }),
        checks: vec![],
    }));
    fsm.apply_command(index, 0, &command);
}

fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(4096);
        message.set_edns(opt);
    }
    message.to_vec().unwrap()
}

fn ask_with(name: &str, qtype: RecordType, transport: Transport, edns: bool, config: &Config) -> Message {
    let fsm = catalog();
    let mut rng = Rng::from_seed(1);
    match handle(&query(name, qtype, edns), transport, fsm.catalog(), config, &mut rng, 1_700_000_000, None) {
        Handled::Answer(bytes) => Message::from_vec(&bytes).unwrap(),
        other => panic!("{name}: {other:?}"),
    }
}

fn ask(name: &str, qtype: RecordType) -> Message {
    ask_with(name, qtype, Transport::Udp, false, &Config::default())
}

fn ips(message: &Message) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn texts(txt: &TXT) -> Vec<String> {
    txt.txt_data.iter().map(|t| String::from_utf8_lossy(t).into_owned()).collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn a_service_answers_its_healthy_instances_and_never_critical_ones() {
    let answer = ask("web.service.consul.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert_eq!(answer.metadata.id, 0x1234);
    assert!(!answer.metadata.recursion_available, "no recursors");
    // Three of four without EDNS (udp_answer_limit); all four healthy ones with it.
    assert_eq!(answer.answers.len(), 3);
    assert!(!answer.metadata.truncation, "Consul's default: no TC");
    let all = ask_with("web.service.consul.", RecordType::A, Transport::Udp, true, &Config::default());
    assert_eq!(ips(&all), [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"), ip("192.168.1.5")]);
    // Warning instances go too with only_passing.
    let strict = Config { only_passing: true, ..Config::default() };
    let passing = ask_with("web.service.consul.", RecordType::A, Transport::Tcp, false, &strict);
    assert_eq!(ips(&passing), [ip("10.0.0.1"), ip("10.0.0.2"), ip("192.168.1.5")]);
    // Case does not matter, nor the datacenter label when it is ours.
    let upper = ask_with("WEB.Service.DC1.Consul.", RecordType::A, Transport::Tcp, false, &Config::default());
    assert_eq!(ips(&upper), ips(&all));
    assert_eq!(upper.queries[0].name().to_ascii(), "WEB.Service.DC1.Consul.", "the question as asked");
    let other_dc = ask("web.service.dc2.consul.", RecordType::A);
    assert_eq!(other_dc.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn tags_filter_in_both_forms_and_tcp_means_none() {
    let tagged =
        ask_with("rails.web.service.consul.", RecordType::A, Transport::Tcp, false, &Config::default());
    assert_eq!(ips(&tagged), [ip("10.0.0.1"), ip("10.0.0.3")]);
    let rfc =
        ask_with("_web._rails.service.consul.", RecordType::SRV, Transport::Tcp, false, &Config::default());
    assert_eq!(rfc.answers.len(), 2);
    let untagged =
        ask_with("_web._tcp.service.consul.", RecordType::SRV, Transport::Tcp, false, &Config::default());
    assert_eq!(untagged.answers.len(), 4);
    let short = ask_with("_web._tcp.consul.", RecordType::SRV, Transport::Tcp, false, &Config::default());
    assert_eq!(short.answers.len(), 4, "`.service` may be left out");
    let none = ask("nosuchtag.web.service.consul.", RecordType::A);
    assert_eq!(none.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn srv_answers_carry_port_weight_and_targets_with_their_addresses() {
    let answer = ask_with("web.service.consul.", RecordType::SRV, Transport::Tcp, false, &Config::default());
    let mut srvs: Vec<(String, u16, u16, u16)> = answer
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => (srv.target.to_ascii(), srv.priority, srv.weight, srv.port),
            other => panic!("{other:?}"),
        })
        .collect();
    srvs.sort();
    assert_eq!(
        srvs,
        [
            ("c0a80105.addr.dc1.consul.".to_owned(), 1, 10, 8080),
            ("n1.node.dc1.consul.".to_owned(), 1, 10, 8080),
            ("n2.node.dc1.consul.".to_owned(), 1, 10, 8080),
            ("n3.node.dc1.consul.".to_owned(), 1, 1, 8080),
        ]
    );
    let mut additional: Vec<(String, String)> = answer
        .additionals
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => (r.name.to_ascii(), a.0.to_string()),
            RData::TXT(txt) => (r.name.to_ascii(), texts(txt).join(" ")),
            other => panic!("{other:?}"),
        })
        .collect();
    additional.sort();
    let pair = |name: &str, data: &str| (name.to_owned(), data.to_owned());
    assert_eq!(
        additional,
        [
            pair("c0a80105.addr.dc1.consul.", "192.168.1.5"),
            pair("n1.node.dc1.consul.", "10.0.0.1"),
            // n1's node meta, one TXT record a key (Consul's `enable_additional_node_meta_txt`).
            pair("n1.node.dc1.consul.", "plain"),
            pair("n1.node.dc1.consul.", "rack=r1"),
            pair("n2.node.dc1.consul.", "10.0.0.2"),
            pair("n3.node.dc1.consul.", "10.0.0.3"),
        ]
    );
    let without_meta = Config { node_meta_txt: false, ..Config::default() };
    let answer = ask_with("web.service.consul.", RecordType::SRV, Transport::Tcp, false, &without_meta);
    assert!(answer.additionals.iter().all(|r| r.record_type() == RecordType::A), "{answer:?}");
    // The addr name resolves.
    let addr = ask("c0a80105.addr.dc1.consul.", RecordType::A);
    assert_eq!(ips(&addr), [ip("192.168.1.5")]);
    assert_eq!(ask("zz.addr.consul.", RecordType::A).metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn nodes_answer_addresses_and_meta_and_unknown_names_are_nxdomain_with_the_soa() {
    assert_eq!(ips(&ask("n2.node.consul.", RecordType::A)), [ip("10.0.0.2")]);
    assert_eq!(ips(&ask("N2.NODE.dc1.consul.", RecordType::A)), [ip("10.0.0.2")], "any case");
    assert_eq!(ips(&ask("web.dotted.node.consul.", RecordType::A)), [ip("10.0.0.9")], "dotted names");
    assert_eq!(ips(&ask("six.node.consul.", RecordType::AAAA)), [ip("fd00::6")]);
    // Node meta: a TXT record a key, `key=value` (RFC 1464) or, for `rfc1035-` keys, the value.
    let txt = ask("n1.node.consul.", RecordType::TXT);
    let meta: Vec<Vec<String>> = txt
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::TXT(txt) => texts(txt),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(meta, [vec!["rack=r1".to_owned()], vec!["plain".to_owned()]]);
    // An address answer carries them in Additional, unless switched off.
    let a = ask("n1.node.consul.", RecordType::A);
    assert_eq!((ips(&a), a.additionals.len()), (vec![ip("10.0.0.1")], 2));
    assert!(a.additionals.iter().all(|r| r.record_type() == RecordType::TXT));
    let without_meta = Config { node_meta_txt: false, ..Config::default() };
    let a = ask_with("n1.node.consul.", RecordType::A, Transport::Udp, false, &without_meta);
    assert_eq!((ips(&a), a.additionals.len()), (vec![ip("10.0.0.1")], 0));
    // A name with no record of the type: NOERROR, empty, SOA (NODATA).
    let nodata = ask("n2.node.consul.", RecordType::AAAA);
    assert_eq!((nodata.metadata.response_code, nodata.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    let missing = ask("nope.node.consul.", RecordType::A);
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    let RData::SOA(soa) = &missing.authorities[0].data else { panic!("{missing:?}") };
    assert_eq!(missing.authorities[0].name.to_ascii(), "consul.");
    assert_eq!(
        (soa.mname.to_ascii(), soa.rname.to_ascii()),
        ("ns.consul.".into(), "hostmaster.consul.".into())
    );
    assert_eq!(
        (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
        (1_700_000_000, 3600, 600, 86_400, 0)
    );
}

#[test]
fn a_service_with_nothing_healthy_is_nxdomain() {
    let mut fsm = catalog();
    let command = Command::Register(Box::new(Register {
        node: Node { node: "n9".into(), address: "10.0.0.99".into(), ..Node::default() },
        skip_node_update: false,
        service: Some(Service { id: "db".into(), service: "db".into(), port: 5432, ..Service::default() }),
        checks: vec![Check {
            node: "n9".into(),
            check_id: "serfHealth".into(),
            name: "Serf Health Status".into(),
            status: Health::Critical,
            ..Check::default()
        }],
    }));
    fsm.apply_command(100, 0, &command);
    let mut rng = Rng::from_seed(1);
    let Handled::Answer(bytes) = handle(
        &query("db.service.consul.", RecordType::A, false),
        Transport::Udp,
        fsm.catalog(),
        &Config::default(),
        &mut rng,
        5,
        None,
    ) else {
        panic!("answered")
    };
    let answer = Message::from_vec(&bytes).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "a failed node's service is gone");
    assert_eq!(ask("nosuch.service.consul.", RecordType::A).metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn the_apex_answers_soa_and_ns_and_other_names_are_refused_or_recursed() {
    let soa = ask("consul.", RecordType::SOA);
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    let ns = ask("consul.", RecordType::NS);
    let RData::NS(server) = &ns.answers[0].data else { panic!("{ns:?}") };
    assert_eq!(server.0.to_ascii(), "n1.node.dc1.consul.");
    assert_eq!(ns.additionals.len(), 1);
    let outside = ask("example.com.", RecordType::A);
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);
    let fsm = catalog();
    let recursing = Config { recursion: true, ..Config::default() };
    let packet = query("example.com.", RecordType::A, false);
    let outcome = handle(&packet, Transport::Udp, fsm.catalog(), &recursing, &mut Rng::from_seed(1), 0, None);
    assert_eq!(outcome, Handled::Recurse);
    let Handled::Answer(failed) = servfail(&packet) else { panic!("answered") };
    let failed = Message::from_vec(&failed).unwrap();
    assert_eq!((failed.metadata.id, failed.metadata.response_code), (0x1234, ResponseCode::ServFail));
    assert_eq!(ask("consul.", RecordType::AXFR).metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn ptr_names_a_node_by_its_address() {
    let answer = ask("2.0.0.10.in-addr.arpa.", RecordType::PTR);
    let RData::PTR(target) = &answer.answers[0].data else { panic!("{answer:?}") };
    assert_eq!(target.0.to_ascii(), "n2.node.dc1.consul.");
}

#[test]
fn the_alternative_domain_answers_in_its_own_names() {
    let config = Config { alt_domain: "service.test".into(), ..Config::default() };
    let answer = ask_with("web.service.service.test.", RecordType::SRV, Transport::Tcp, false, &config);
    let targets: Vec<String> = answer
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => srv.target.to_ascii(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(targets.iter().all(|t| t.ends_with(".dc1.service.test.")), "{targets:?}");
}

#[test]
fn answers_are_trimmed_to_fit_and_tc_is_set_only_when_asked() {
    let mut fsm = Fsm::new();
    for n in 0..200u32 {
        let node = Node {
            node: format!("node-with-a-long-name-{n}"),
            address: Ipv4Addr::from(0x0a00_0000 + n).to_string(),
            ..Node::default()
        };
        let service = Service { id: "big".into(), service: "big".into(), port: 1, ..Service::default() };
        let command = Command::Register(Box::new(Register {
            node,
            skip_node_update: false,
            service: Some(service),
            checks: vec![],
        }));
        fsm.apply_command(u64::from(n) + 1, 0, &command);
    }
    let run = |qtype, transport, edns, config: &Config| {
        let Handled::Answer(bytes) = handle(
            &query("big.service.consul.", qtype, edns),
            transport,
            fsm.catalog(),
            config,
            &mut Rng::from_seed(3),
            0,
            None,
        ) else {
            panic!("answered")
        };
        (bytes.len(), Message::from_vec(&bytes).unwrap())
    };
    let plain = Config::default();
    let (len, udp) = run(RecordType::SRV, Transport::Udp, false, &plain);
    assert!(len <= UDP_BYTES_MAX, "{len}");
    assert!(udp.answers.len() <= 3 && !udp.answers.is_empty());
    assert!(!udp.metadata.truncation);
    let truncating = Config { enable_truncate: true, ..Config::default() };
    let (_, tc) = run(RecordType::SRV, Transport::Udp, false, &truncating);
    assert!(tc.metadata.truncation, "trimmed, and enable_truncate");
    let (len, edns) = run(RecordType::A, Transport::Udp, true, &plain);
    assert!(len <= 4096, "{len}");
    assert!(edns.answers.len() > 100, "{} answers fit 4096 bytes", edns.answers.len());
    let (_, tcp) = run(RecordType::A, Transport::Tcp, false, &plain);
    assert_eq!(tcp.answers.len(), 200);
    // Additional records follow the SRV answers that remain.
    let (_, srv) = run(RecordType::SRV, Transport::Udp, true, &plain);
    assert_eq!(srv.answers.len(), srv.additionals.len());
}

#[test]
fn the_same_seed_gives_the_same_answer_and_another_a_shuffle() {
    let fsm = catalog();
    let packet = query("web.service.consul.", RecordType::A, true);
    let answer = |seed| {
        handle(&packet, Transport::Udp, fsm.catalog(), &Config::default(), &mut Rng::from_seed(seed), 0, None)
    };
    assert_eq!(answer(4), answer(4));
    let orders: std::collections::BTreeSet<Vec<IpAddr>> = (0..20)
        .map(|seed| match answer(seed) {
            Handled::Answer(bytes) => {
                let message = Message::from_vec(&bytes).unwrap();
                message
                    .answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        _ => None,
                    })
                    .collect()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(orders.len() > 1, "shuffled");
}

#[test]
fn garbage_is_dropped_or_answered_formerr_and_never_panics() {
    let fsm = catalog();
    let config = Config::default();
    let mut rng = Rng::from_seed(1);
    assert_eq!(handle(&[], Transport::Udp, fsm.catalog(), &config, &mut rng, 0, None), Handled::Drop);
    assert_eq!(handle(&[1, 2, 3], Transport::Udp, fsm.catalog(), &config, &mut rng, 0, None), Handled::Drop);
    let mut header_only = vec![0xab, 0xcd, 0x01, 0x00, 0, 5, 0, 0, 0, 0, 0, 0];
    header_only.extend_from_slice(&[0xff; 4]);
    let Handled::Answer(bytes) =
        handle(&header_only, Transport::Udp, fsm.catalog(), &config, &mut rng, 0, None)
    else {
        panic!("a readable header gets an answer")
    };
    assert_eq!(&bytes[..2], &[0xab, 0xcd]);
    assert_eq!(bytes[3] & 0x0f, 1, "FORMERR");
    // An answer is never answered.
    let mut response = query("web.service.consul.", RecordType::A, false);
    response[2] |= 0x80;
    assert_eq!(handle(&response, Transport::Udp, fsm.catalog(), &config, &mut rng, 0, None), Handled::Drop);
}

proptest::proptest! {
    #[test]
    fn arbitrary_packets_never_panic(packet in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let fsm = catalog();
        let _ = handle(&packet, Transport::Udp, fsm.catalog(), &Config::default(), &mut Rng::from_seed(1), 0, None);
    }

    #[test]
    fn mutated_queries_never_panic(flips in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 1..6)) {
        let fsm = catalog();
        let mut packet = query("rails.web.service.dc1.consul.", RecordType::SRV, true);
        for (at, byte) in flips {
            let len = packet.len();
            packet[at % len] = byte;
        }
        let _ = handle(&packet, Transport::Udp, fsm.catalog(), &Config::default(), &mut Rng::from_seed(1), 0, None);
    }
}

#[test]
fn ttls_follow_node_ttl_and_the_most_specific_service_ttl() {
    let config = Config {
        node_ttl_secs: 30,
        service_ttl_secs: BTreeMap::from([
            ("*".to_owned(), 5),
            ("we*".to_owned(), 10),
            ("web".to_owned(), 15),
            ("w*".to_owned(), 7),
        ]),
        ..Config::default()
    };
    let ttl = |name: &str, qtype| ask_with(name, qtype, Transport::Tcp, false, &config).answers[0].ttl;
    assert_eq!(ttl("web.service.consul.", RecordType::A), 15, "exact");
    assert_eq!(ttl("n1.node.consul.", RecordType::A), 30, "node_ttl");
    assert_eq!(config.service_ttl("webby"), 10, "the longest prefix");
    assert_eq!(config.service_ttl("wx"), 7);
    assert_eq!(config.service_ttl("db"), 5, "the wildcard");
    assert_eq!(Config::default().service_ttl("db"), 0, "no caching by default");
}

#[test]
fn service_names_match_in_any_case() {
    let mut fsm = Fsm::new();
    register(&mut fsm, 1, ("n1", "10.0.0.1"), ("Api", "", 1));
    let handled = handle(
        &query("api.service.consul.", RecordType::A, false),
        Transport::Udp,
        fsm.catalog(),
        &Config::default(),
        &mut Rng::from_seed(1),
        0,
        None,
    );
    let Handled::Answer(bytes) = handled else { panic!("{handled:?}") };
    assert_eq!(ips(&Message::from_vec(&bytes).unwrap()), [ip("10.0.0.1")]);
}

#[test]
fn ptr_names_an_ipv6_node_too() {
    let nibbles: String = format!("{:032x}", u128::from("fd00::6".parse::<Ipv6Addr>().unwrap()))
        .chars()
        .rev()
        .map(|c| format!("{c}."))
        .collect();
    let answer = ask(&format!("{nibbles}ip6.arpa."), RecordType::PTR);
    let RData::PTR(target) = &answer.answers[0].data else { panic!("{answer:?}") };
    assert_eq!(target.0.to_ascii(), "six.node.dc1.consul.");
    // An address nobody has is not ours to answer (REFUSED without recursors).
    assert_eq!(ask("9.9.9.9.in-addr.arpa.", RecordType::PTR).metadata.response_code, ResponseCode::Refused);
}

#[test]
fn ns_names_at_most_three_servers_drawn_at_random() {
    let mut fsm = Fsm::new();
    for n in 0..5u64 {
        register(&mut fsm, n + 1, (&format!("s{n}"), &format!("10.0.1.{n}")), ("consul", "", 8300));
    }
    let packet = query("consul.", RecordType::NS, false);
    let sets: std::collections::BTreeSet<Vec<String>> = (0..20)
        .map(|seed| {
            let Handled::Answer(bytes) = handle(
                &packet,
                Transport::Udp,
                fsm.catalog(),
                &Config::default(),
                &mut Rng::from_seed(seed),
                0,
                None,
            ) else {
                panic!("answered")
            };
            let answer = Message::from_vec(&bytes).unwrap();
            assert_eq!((answer.answers.len(), answer.additionals.len()), (3, 3), "three, with addresses");
            let mut names: Vec<String> = answer
                .answers
                .iter()
                .map(|r| match &r.data {
                    RData::NS(ns) => ns.0.to_ascii(),
                    other => panic!("{other:?}"),
                })
                .collect();
            names.sort();
            names
        })
        .collect();
    assert!(sets.len() > 1, "drawn at random: {sets:?}");
}

/// External services: `rds` on a node whose address is a hostname outside the domain, `alias`
/// whose service address names `web` inside it, `loop` whose address names itself, and `mixed`
/// with one instance on a hostname and one on an IP.
fn external_catalog() -> Fsm {
    let mut fsm = Fsm::new();
    let instances = [
        (("aws", "db.example.com"), ("rds", "")),
        (("n1", "10.0.0.1"), ("web", "")),
        (("n2", "10.0.0.2"), ("alias", "web.service.consul")),
        (("n3", "10.0.0.3"), ("loop", "loop.service.consul")),
        (("n4", "10.0.0.4"), ("mixed", "cdn.example.com")),
        (("n5", "10.0.0.5"), ("mixed", "")),
    ];
    for (index, (node, (service, address))) in (1..).zip(instances) {
        register(&mut fsm, index, node, (service, address, 5432));
    }
    fsm
}

fn recursing() -> Config {
    Config { recursion: true, service_ttl_secs: BTreeMap::from([("*".to_owned(), 9)]), ..Config::default() }
}

/// What a recursor would reply for `name`: a CNAME to `real.example.net.`, and its address.
fn recursor_reply(name: &str) -> Vec<u8> {
    let mut reply = Message::new(7, MessageType::Response, OpCode::Query);
    let owner = Name::from_ascii(name).unwrap();
    let real = Name::from_ascii("real.example.net.").unwrap();
    reply.add_query(Query::query(owner.clone(), RecordType::A));
    reply.add_answer(Record::from_rdata(owner, 300, RData::CNAME(CNAME(real.clone()))));
    reply.add_answer(Record::from_rdata(real, 300, RData::A(A(Ipv4Addr::new(203, 0, 113, 7)))));
    // A record about another name (a poisoning attempt, or junk): never passed on.
    let web = Name::from_ascii("web.service.consul.").unwrap();
    reply.add_answer(Record::from_rdata(web, 300, RData::A(A(Ipv4Addr::new(6, 6, 6, 6)))));
    reply.to_vec().unwrap()
}

fn pass(fsm: &Fsm, name: &str, qtype: RecordType, config: &Config, resolved: Option<&Resolved>) -> Handled {
    let packet = query(name, qtype, false);
    handle(&packet, Transport::Udp, fsm.catalog(), config, &mut Rng::from_seed(5), 0, resolved)
}

fn answered(handled: Handled) -> Message {
    match handled {
        Handled::Answer(bytes) => Message::from_vec(&bytes).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// The recursors' replies for `db.example.com.` (see [`recursor_reply`]).
fn resolved_db() -> Resolved {
    let mut resolved = Resolved::default();
    resolved.insert("db.example.com.".to_owned(), recursor_reply("db.example.com."));
    resolved
}

/// The answer to `name` over both passes through the recursors: the first must ask them for
/// `db.example.com.`, the second gets [`resolved_db`].
fn answered_in_two_passes(fsm: &Fsm, name: &str, qtype: RecordType) -> Message {
    let config = recursing();
    let first = pass(fsm, name, qtype, &config, None);
    assert_eq!(first, Handled::Resolve(vec!["db.example.com.".to_owned()]));
    answered(pass(fsm, name, qtype, &config, Some(&resolved_db())))
}

/// `(owner, data)` of each record, in order.
fn rows(records: &[Record]) -> Vec<(String, String)> {
    records.iter().map(|r| (r.name.to_ascii(), r.data.to_string())).collect()
}

#[test]
fn a_hostname_outside_the_domain_is_looked_up_through_the_recursors_in_a_second_pass() {
    let fsm = external_catalog();
    let config = recursing();
    // First pass: the names to look up, nothing answered yet. Second pass: the CNAME, then what
    // the recursor said, with the service's TTL.
    let answer = answered_in_two_passes(&fsm, "rds.service.consul.", RecordType::A);
    assert_eq!(
        rows(&answer.answers),
        [
            ("rds.service.consul.".to_owned(), "db.example.com.".to_owned()),
            ("db.example.com.".to_owned(), "real.example.net.".to_owned()),
            ("real.example.net.".to_owned(), "203.0.113.7".to_owned()),
        ]
    );
    assert!(answer.answers.iter().all(|r| r.ttl == 9), "{answer:?}");
    // No reply (every recursor failed) or a reply that is garbage: the CNAME alone, and never a
    // third pass.
    for reply in [Vec::new(), vec![0xff; 7]] {
        let mut failed = Resolved::default();
        failed.insert("db.example.com.".to_owned(), reply);
        let answer = answered(pass(&fsm, "rds.service.consul.", RecordType::A, &config, Some(&failed)));
        assert_eq!(rows(&answer.answers), [("rds.service.consul.".to_owned(), "db.example.com.".to_owned())]);
    }
    // Without recursors the CNAME is the answer at once, as Consul's.
    let answer = answered(pass(&fsm, "rds.service.consul.", RecordType::A, &Config::default(), None));
    assert_eq!(rows(&answer.answers), [("rds.service.consul.".to_owned(), "db.example.com.".to_owned())]);
    // A node with a hostname for an address is followed the same way.
    let answer = answered_in_two_passes(&fsm, "aws.node.consul.", RecordType::A);
    assert_eq!(answer.answers.len(), 3, "{answer:?}");
    // The query the recursors are sent: type A for the name, recursion desired.
    let sent = Message::from_vec(&address_query("db.example.com.", 77).unwrap()).unwrap();
    assert_eq!((sent.metadata.id, sent.metadata.recursion_desired), (77, true));
    assert_eq!(sent.queries[0].query_type(), RecordType::A);
    assert_eq!(sent.queries[0].name().to_ascii(), "db.example.com.");
}

#[test]
fn an_srv_target_that_is_a_hostname_gets_the_recursors_records_in_additional() {
    let fsm = external_catalog();
    let answer = answered_in_two_passes(&fsm, "rds.service.consul.", RecordType::SRV);
    assert_eq!(
        rows(&answer.answers),
        [("rds.service.consul.".to_owned(), "1 1 5432 db.example.com.".to_owned())]
    );
    assert_eq!(
        rows(&answer.additionals),
        [
            ("db.example.com.".to_owned(), "real.example.net.".to_owned()),
            ("real.example.net.".to_owned(), "203.0.113.7".to_owned()),
        ]
    );
}

#[test]
fn a_hostname_inside_the_domain_is_followed_here_and_a_loop_ends() {
    let fsm = external_catalog();
    // `alias` names `web.service.consul`: the CNAME and web's address, in one pass, no recursors.
    let answer = answered(pass(&fsm, "alias.service.consul.", RecordType::A, &Config::default(), None));
    assert_eq!(
        rows(&answer.answers),
        [
            ("alias.service.consul.".to_owned(), "web.service.consul.".to_owned()),
            ("web.service.consul.".to_owned(), "10.0.0.1".to_owned()),
        ]
    );
    // `loop` names itself: followed CHASE_DEPTH_MAX times, then the chain stops (over TCP, where
    // `udp_answer_limit` does not cut it first).
    let packet = query("loop.service.consul.", RecordType::A, false);
    let handled =
        handle(&packet, Transport::Tcp, fsm.catalog(), &recursing(), &mut Rng::from_seed(1), 0, None);
    let answer = answered(handled);
    assert_eq!(answer.answers.len(), usize::from(CHASE_DEPTH_MAX) + 1, "{answer:?}");
    assert!(answer.answers.iter().all(|r| r.record_type() == RecordType::CNAME));
}

#[test]
fn addresses_win_over_a_hostname_so_a_cname_never_shares_its_name() {
    let fsm = external_catalog();
    for seed in 0..20 {
        let packet = query("mixed.service.consul.", RecordType::A, false);
        let handled =
            handle(&packet, Transport::Udp, fsm.catalog(), &recursing(), &mut Rng::from_seed(seed), 0, None);
        // The IP instance answers; the hostname is not even looked up.
        let answer = answered(handled);
        assert_eq!(rows(&answer.answers), [("mixed.service.consul.".to_owned(), "10.0.0.5".to_owned())]);
    }
}

#[test]
fn the_client_subnet_is_echoed_with_scope_zero() {
    let fsm = catalog();
    let ask_from = |name: &str| {
        let mut message = Message::new(9, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        let subnet = ClientSubnet::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)), 24, 0);
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
        message.set_edns(edns);
        let packet = message.to_vec().unwrap();
        let handled = handle(
            &packet,
            Transport::Udp,
            fsm.catalog(),
            &Config::default(),
            &mut Rng::from_seed(1),
            0,
            None,
        );
        let answer = answered(handled);
        let Some(EdnsOption::Subnet(echoed)) = answer.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet))
        else {
            panic!("no subnet echoed: {answer:?}")
        };
        (echoed.addr(), echoed.source_prefix(), echoed.scope_prefix())
    };
    let network = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0));
    // Scope 0: no answer depends on where the client is (Consul's, prepared queries aside).
    assert_eq!(ask_from("web.service.consul."), (network, 24, 0));
    assert_eq!(ask_from("nope.service.consul."), (network, 24, 0));
}

#[test]
fn trimming_keeps_the_records_a_kept_srv_target_cnames_to() {
    let target = Name::from_ascii("db.example.com.").unwrap();
    let real = Name::from_ascii("real.example.net.").unwrap();
    let other = Name::from_ascii("n9.node.dc1.consul.").unwrap();
    let owner = Name::from_ascii("rds.service.consul.").unwrap();
    let mut response = Message::new(1, MessageType::Response, OpCode::Query);
    response.add_answer(Record::from_rdata(owner, 0, RData::SRV(SRV::new(1, 1, 5432, target.clone()))));
    response.add_additional(Record::from_rdata(target, 0, RData::CNAME(CNAME(real.clone()))));
    response.add_additional(Record::from_rdata(real, 0, RData::A(A(Ipv4Addr::new(203, 0, 113, 7)))));
    response.add_additional(Record::from_rdata(other, 0, RData::A(A(Ipv4Addr::new(10, 0, 0, 9)))));
    sync_additionals(&mut response);
    assert_eq!(
        rows(&response.additionals),
        [
            ("db.example.com.".to_owned(), "real.example.net.".to_owned()),
            ("real.example.net.".to_owned(), "203.0.113.7".to_owned()),
        ]
    );
}

#[test]
fn the_names_looked_up_are_the_first_drawn_and_at_most_chased_names_max() {
    let mut fsm = Fsm::new();
    for n in 0..12u64 {
        register(&mut fsm, n + 1, (&format!("n{n}"), &format!("h{n:02}.example.com")), ("many", "", 1));
    }
    let packet = query("many.service.consul.", RecordType::SRV, false);
    let run = |resolved: Option<&Resolved>| {
        handle(&packet, Transport::Tcp, fsm.catalog(), &recursing(), &mut Rng::from_seed(11), 0, resolved)
    };
    let Handled::Resolve(names) = run(None) else { panic!("the first pass asks") };
    assert_eq!(names.len(), CHASED_NAMES_MAX);
    let mut resolved = Resolved::default();
    for name in &names {
        resolved.insert(name.clone(), recursor_reply(name));
    }
    let answer = answered(run(Some(&resolved)));
    let targets: Vec<String> = answer
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => srv.target.to_ascii(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(targets.len(), 12);
    assert_eq!(targets[..CHASED_NAMES_MAX], names[..], "looked up in the order drawn");
    // The CNAME of each one looked up is in Additional (with the address behind it); the others
    // have nothing there.
    let cnamed: BTreeSet<String> = answer
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::CNAME)
        .map(|r| r.name.to_ascii())
        .collect();
    assert_eq!(cnamed, names.iter().cloned().collect::<BTreeSet<String>>());
}

/// With ACLs on, the DNS token's permissions decide what exists: an instance needs
/// `node:read` on its node and `service:read` on it, a node `node:read`, a PTR its node's.
#[test]
fn answers_show_only_what_the_dns_token_may_read() {
    use crate::acl::{AccessLevel, Authorizer, DefaultPolicy, Match, Rules, ServiceAccess};
    let mut rules = Rules::default();
    rules.service.insert(Match::Prefix, "", ServiceAccess::new(AccessLevel::Read));
    rules.node.insert(Match::Exact, "n1", AccessLevel::Read);
    rules.node.insert(Match::Exact, "n2", AccessLevel::Read);
    let authorizer = Authorizer::from_policies([&rules], DefaultPolicy::Deny);
    let fsm = catalog();
    let ask = |name: &str, qtype: RecordType, authorizer: Option<&Authorizer>| {
        let packet = query(name, qtype, false);
        let handled = handle_as(
            &packet,
            Transport::Udp,
            fsm.catalog(),
            &Config::default(),
            &mut Rng::from_seed(1),
            0,
            None,
            authorizer,
        );
        let Handled::Answer(bytes) = handled else { panic!("{name}: {handled:?}") };
        Message::from_vec(&bytes).unwrap()
    };
    let addresses = |message: &Message| {
        let mut found: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
        found.sort();
        found
    };
    // n3 (warning) and n5 pass too without ACLs (three of the four fit Consul's UDP answer
    // limit); the token sees web on n1 and n2 only.
    assert_eq!(addresses(&ask("web.service.consul.", RecordType::A, None)).len(), 3);
    assert_eq!(
        addresses(&ask("web.service.consul.", RecordType::A, Some(&authorizer))),
        ["10.0.0.1", "10.0.0.2"]
    );
    let hidden = ask("n3.node.consul.", RecordType::A, Some(&authorizer));
    assert_eq!(hidden.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(addresses(&ask("n1.node.consul.", RecordType::A, Some(&authorizer))), ["10.0.0.1"]);
    let nothing = Authorizer::from_policies([], DefaultPolicy::Deny);
    assert_eq!(
        ask("web.service.consul.", RecordType::A, Some(&nothing)).metadata.response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(ask("2.0.0.10.in-addr.arpa.", RecordType::PTR, Some(&authorizer)).answers.len(), 1);
    assert_eq!(ask("3.0.0.10.in-addr.arpa.", RecordType::PTR, Some(&authorizer)).answers.len(), 0);
}
