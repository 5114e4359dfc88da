//! Serving the zone over UDP and TCP with hickory-server: questions about the zone are
//! answered from the latest [`Zone`]; others are sent on to the upstream servers (the host's
//! resolvers) and their answer passed back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::rdata::{A, CNAME, PTR, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::sync::watch;

use crate::zone::{self, Answer, QueryType, Zone};

/// Seconds a cluster answer may be cached (CoreDNS's kubernetes plugin default).
pub const TTL: u32 = 5;
/// How long an upstream server gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers questions from the zone `zones` holds, forwarding the rest to `upstream`.
pub struct Handler {
    zones: watch::Receiver<Arc<Zone>>,
    upstream: Vec<SocketAddr>,
}

impl Handler {
    pub fn new(zones: watch::Receiver<Arc<Zone>>, upstream: Vec<SocketAddr>) -> Self {
        Handler { zones, upstream }
    }
}

fn query_type(t: RecordType) -> QueryType {
    match t {
        RecordType::A => QueryType::A,
        RecordType::AAAA => QueryType::Aaaa,
        RecordType::CNAME => QueryType::Cname,
        RecordType::SRV => QueryType::Srv,
        RecordType::PTR => QueryType::Ptr,
        RecordType::TXT => QueryType::Txt,
        RecordType::ANY => QueryType::Any,
        _ => QueryType::Other,
    }
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(format!("{text}.")).ok()
}

/// A zone record as a DNS record.
fn to_record(record: &zone::Record) -> Option<Record> {
    let (owner, data) = match record {
        zone::Record::A(owner, ip) => (owner, RData::A(A(*ip))),
        zone::Record::Cname(owner, target) => (owner, RData::CNAME(CNAME(name(target)?))),
        zone::Record::Ptr(owner, target) => (owner, RData::PTR(PTR(name(target)?))),
        zone::Record::Txt(owner, text) => (owner, RData::TXT(TXT::new(vec![text.clone()]))),
        zone::Record::Srv {
            name: owner,
            priority,
            weight,
            port,
            target,
        } => (
            owner,
            RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        ),
    };
    Some(Record::from_rdata(name(owner)?, TTL, data))
}

impl Handler {
    /// Asks each upstream server in turn; the first answer wins.
    async fn forward(&self, query: &Query, recursion: bool) -> Option<Message> {
        let mut message = Message::new();
        message
            .set_id(rand::random())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(recursion)
            .add_query(query.clone());
        let bytes = message.to_vec().ok()?;
        for server in &self.upstream {
            let bind: SocketAddr = if server.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else {
                continue;
            };
            if socket.send_to(&bytes, server).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            match tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) if from == *server => {
                    if let Ok(reply) = Message::from_vec(&buf[..n]) {
                        if reply.id() == message.id() {
                            return Some(reply);
                        }
                    }
                }
                _ => tracing::debug!(%server, "an upstream DNS server did not answer"),
            }
        }
        None
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let Some(query) = request.queries().first() else {
            header.set_response_code(ResponseCode::FormErr);
            return send(&mut response, builder.build_no_records(header)).await;
        };
        let zone = self.zones.borrow().clone();
        let qname = query.name().to_string();
        let resolved = zone.resolve(&qname, query_type(query.query_type()));
        let records: Vec<Record> = match resolved.answer {
            Answer::Records(records) => {
                header.set_authoritative(true);
                let mut records: Vec<Record> = records.iter().filter_map(to_record).collect();
                // An ExternalName's target outside the zone: its addresses from upstream, so
                // the client needs no second question (as CoreDNS answers).
                if let Some(target) = resolved.external.as_deref().and_then(name) {
                    let onward = Query::query(target, query.query_type());
                    if let Some(reply) = self
                        .forward(&onward, request.header().recursion_desired())
                        .await
                    {
                        records.extend(reply.answers().iter().cloned());
                    }
                }
                records
            }
            Answer::NoData => {
                header.set_authoritative(true);
                Vec::new()
            }
            Answer::NxDomain => {
                header.set_authoritative(true);
                header.set_response_code(ResponseCode::NXDomain);
                Vec::new()
            }
            Answer::Elsewhere => {
                match self
                    .forward(query.original(), request.header().recursion_desired())
                    .await
                {
                    Some(reply) => {
                        header.set_response_code(reply.response_code());
                        let answers = reply.answers().to_vec();
                        let authority = reply.name_servers().to_vec();
                        return send(
                            &mut response,
                            builder.build(header, answers.iter(), authority.iter(), [], []),
                        )
                        .await;
                    }
                    None => {
                        header.set_response_code(ResponseCode::ServFail);
                        Vec::new()
                    }
                }
            }
        };
        send(
            &mut response,
            builder.build(header, records.iter(), [], [], []),
        )
        .await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "sending a DNS answer failed");
            let mut header = Header::new();
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        }
    }
}

/// The name servers of a resolv.conf, other than `own` (the cluster DNS itself).
pub fn upstream_from_resolv_conf(text: &str, own: &[SocketAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|addr| !own.contains(addr))
        .collect()
}
