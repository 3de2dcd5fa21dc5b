//! The DNS interface's query handler on arbitrary packets, over UDP and TCP, against a small
//! catalog: it may answer (FORMERR, NXDOMAIN, records...) or drop, but must not panic, and an
//! answer is always a well-formed DNS message carrying the query's ID that fits its transport.

#![no_main]

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use muster_core::dns::{handle, Config, Handled, Transport, TCP_BYTES_MAX, UDP_BYTES_MAX};
use muster_core::fsm::{Check, Command, Fsm, Health, Node, Register, Service};
use muster_core::Rng;

fn catalog() -> Fsm {
    let mut fsm = Fsm::new();
    for (n, status) in [Health::Passing, Health::Warning, Health::Critical].into_iter().enumerate() {
        let name = format!("n{n}");
        let command = Command::Register(Box::new(Register {
            node: Node { node: name.clone(), address: format!("10.0.0.{n}"), ..Node::default() },
            skip_node_update: false,
            service: Some(Service {
                id: "web".into(),
                service: "web".into(),
                tags: vec!["rails".into()],
                port: 80,
                ..Service::default()
            }),
            checks: vec![Check {
                node: name,
                check_id: "c".into(),
                service_id: "web".into(),
                status,
                ..Check::default()
            }],
        }));
        fsm.apply_command(n as u64 + 1, 0, &command);
    }
    fsm
}

fuzz_target!(|data: &[u8]| {
    let fsm = catalog();
    for (transport, limit) in [(Transport::Udp, UDP_BYTES_MAX.max(4096)), (Transport::Tcp, TCP_BYTES_MAX)] {
        let handled =
            handle(data, transport, fsm.catalog(), &Config::default(), &mut Rng::from_seed(1), 0, None);
        if let Handled::Answer(bytes) = handled {
            assert!(bytes.len() <= limit, "{} bytes over {transport:?}", bytes.len());
            let answer = Message::from_vec(&bytes).expect("answers decode");
            assert_eq!(&bytes[..2], &data[..2], "the query's ID");
            assert!(answer.metadata.message_type == hickory_proto::op::MessageType::Response);
        }
    }
});
