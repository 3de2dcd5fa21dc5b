use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
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
    match handle(&query(name, qtype, edns), transport, fsm.catalog(), config, &mut rng, 1_700_000_000) {
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
    let mut additional: Vec<(String, IpAddr)> = answer
        .additionals
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => (r.name.to_ascii(), IpAddr::V4(a.0)),
            other => panic!("{other:?}"),
        })
        .collect();
    additional.sort();
    assert_eq!(additional[0], ("c0a80105.addr.dc1.consul.".to_owned(), ip("192.168.1.5")));
    assert_eq!(additional[1], ("n1.node.dc1.consul.".to_owned(), ip("10.0.0.1")));
    assert_eq!(additional.len(), 4);
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
    let txt = ask("n1.node.consul.", RecordType::TXT);
    let RData::TXT(texts) = &txt.answers[0].data else { panic!("{txt:?}") };
    let texts: Vec<String> = texts.txt_data.iter().map(|t| String::from_utf8_lossy(t).into_owned()).collect();
    assert_eq!(texts, ["rack=r1", "plain"]);
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
    let outcome = handle(&packet, Transport::Udp, fsm.catalog(), &recursing, &mut Rng::from_seed(1), 0);
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
        handle(&packet, Transport::Udp, fsm.catalog(), &Config::default(), &mut Rng::from_seed(seed), 0)
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
    assert_eq!(handle(&[], Transport::Udp, fsm.catalog(), &config, &mut rng, 0), Handled::Drop);
    assert_eq!(handle(&[1, 2, 3], Transport::Udp, fsm.catalog(), &config, &mut rng, 0), Handled::Drop);
    let mut header_only = vec![0xab, 0xcd, 0x01, 0x00, 0, 5, 0, 0, 0, 0, 0, 0];
    header_only.extend_from_slice(&[0xff; 4]);
    let Handled::Answer(bytes) = handle(&header_only, Transport::Udp, fsm.catalog(), &config, &mut rng, 0)
    else {
        panic!("a readable header gets an answer")
    };
    assert_eq!(&bytes[..2], &[0xab, 0xcd]);
    assert_eq!(bytes[3] & 0x0f, 1, "FORMERR");
    // An answer is never answered.
    let mut response = query("web.service.consul.", RecordType::A, false);
    response[2] |= 0x80;
    assert_eq!(handle(&response, Transport::Udp, fsm.catalog(), &config, &mut rng, 0), Handled::Drop);
}

proptest::proptest! {
    #[test]
    fn arbitrary_packets_never_panic(packet in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let fsm = catalog();
        let _ = handle(&packet, Transport::Udp, fsm.catalog(), &Config::default(), &mut Rng::from_seed(1), 0);
    }

    #[test]
    fn mutated_queries_never_panic(flips in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 1..6)) {
        let fsm = catalog();
        let mut packet = query("rails.web.service.dc1.consul.", RecordType::SRV, true);
        for (at, byte) in flips {
            let len = packet.len();
            packet[at % len] = byte;
        }
        let _ = handle(&packet, Transport::Udp, fsm.catalog(), &Config::default(), &mut Rng::from_seed(1), 0);
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
    let fsm = catalog();
    let query = Query::new();
    let lookup = Lookup::new(fsm.catalog(), &config, &query, 0);
    assert_eq!(lookup.service_ttl("webby"), 10, "the longest prefix");
    assert_eq!(lookup.service_ttl("wx"), 7);
    assert_eq!(lookup.service_ttl("db"), 5, "the wildcard");
    let default = Config::default();
    let none = Lookup::new(fsm.catalog(), &default, &query, 0);
    assert_eq!(none.service_ttl("db"), 0, "no caching by default");
}

#[test]
fn service_names_match_in_any_case() {
    let mut fsm = Fsm::new();
    let command = Command::Register(Box::new(Register {
        node: Node { node: "n1".into(), address: "10.0.0.1".into(), ..Node::default() },
        skip_node_update: false,
        service: Some(Service { id: "Api".into(), service: "Api".into(), port: 1, ..Service::default() }),
        checks: vec![],
    }));
    fsm.apply_command(1, 0, &command);
    let handled = handle(
        &query("api.service.consul.", RecordType::A, false),
        Transport::Udp,
        fsm.catalog(),
        &Config::default(),
        &mut Rng::from_seed(1),
        0,
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
        let command = Command::Register(Box::new(Register {
            node: Node { node: format!("s{n}"), address: format!("10.0.1.{n}"), ..Node::default() },
            skip_node_update: false,
            service: Some(Service {
                id: "consul".into(),
                service: "consul".into(),
                port: 8300,
                ..Service::default()
            }),
            checks: vec![],
        }));
        fsm.apply_command(n + 1, 0, &command);
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
