//! What a recursor replies for an external service's hostname, arbitrary, into the DNS
//! interface's second pass: the reply is network input the core parses. It must not panic,
//! never ask for another pass, and answer a well-formed message that fits its transport, whose
//! first record is the service's CNAME (or, for SRV, whose only answer is the SRV record).

#![no_main]

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;
use muster_core::dns::{handle, Config, Handled, Resolved, Transport, TCP_BYTES_MAX, UDP_BYTES_MAX};
use muster_core::fsm::{Command, Fsm, Node, Register, Service};
use muster_core::Rng;

const HOSTNAME: &str = "db.example.com.";

/// `rds` on a node whose address is a hostname outside the domain.
fn catalog() -> Fsm {
    let mut fsm = Fsm::new();
    let command = Command::Register(Box::new(Register {
        node: Node { node: "aws".into(), address: HOSTNAME.trim_end_matches('.').into(), ..Node::default() },
        skip_node_update: false,
        service: Some(Service { id: "rds".into(), service: "rds".into(), port: 5432, ..Service::default() }),
        checks: vec![],
    }));
    fsm.apply_command(1, 0, &command);
    fsm
}

fn query(qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii("rds.service.consul.").unwrap(), qtype));
    message.to_vec().unwrap()
}

fuzz_target!(|reply: &[u8]| {
    let fsm = catalog();
    let config = Config { recursion: true, ..Config::default() };
    let mut resolved = Resolved::default();
    resolved.insert(HOSTNAME.to_owned(), reply.to_vec());
    for qtype in [RecordType::A, RecordType::SRV, RecordType::ANY] {
        let packet = query(qtype);
        let first = handle(&packet, Transport::Udp, fsm.catalog(), &config, &mut Rng::from_seed(1), 0, None);
        assert_eq!(first, Handled::Resolve(vec![HOSTNAME.to_owned()]), "{qtype}: the first pass asks");
        for (transport, limit) in [(Transport::Udp, UDP_BYTES_MAX), (Transport::Tcp, TCP_BYTES_MAX)] {
            let second = handle(
                &packet,
                transport,
                fsm.catalog(),
                &config,
                &mut Rng::from_seed(1),
                0,
                Some(&resolved),
            );
            let Handled::Answer(bytes) = second else { panic!("{qtype} over {transport:?}: {second:?}") };
            assert!(bytes.len() <= limit, "{} bytes over {transport:?}", bytes.len());
            let answer = Message::from_vec(&bytes).expect("answers decode");
            assert_eq!(answer.metadata.id, 0x4242);
            let first_type = answer.answers.first().map(|r| r.record_type());
            let expected = if qtype == RecordType::SRV { RecordType::SRV } else { RecordType::CNAME };
            assert_eq!(first_type, Some(expected), "{qtype} over {transport:?}: {answer:?}");
        }
    }
});
