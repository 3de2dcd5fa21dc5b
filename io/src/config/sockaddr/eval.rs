//! Execution: go-sockaddr's function table, the values pipelines carry, and the evaluator of a
//! parsed template over an interface list.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::net::IpAddr;

use super::addr::{
    address, cmp_address, cmp_private, cmp_size, cmp_type, join_addresses, merge_sort, sockaddr_string,
};
use super::error::{CallError, Fault, SyntaxError};
use super::functions::{attribute, check_type, compile, math, offset, unique, FlagTest};
use super::parse::{Command, Operand, OperandKind, Pipeline};
use super::rfc::{in_rfc, is_forwardable, parse_network, rfc_networks, RFC_6890};
use super::IfAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    GetAllInterfaces,
    GetDefaultInterfaces,
    GetPrivateInterfaces,
    GetPublicInterfaces,
    GetPrivateIp,
    GetPrivateIps,
    GetPublicIp,
    GetPublicIps,
    GetInterfaceIp,
    GetInterfaceIps,
    Include,
    Exclude,
    Sort,
    Unique,
    Limit,
    Offset,
    Math,
    Attr,
    Join,
}

/// The type a function parameter wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param {
    Str,
    Uint,
    Int,
    List,
    /// `attr` takes a list or (in Go) a single address, and reports other types itself.
    Any,
}

impl Func {
    const ALL: [Func; 19] = [
        Func::GetAllInterfaces,
        Func::GetDefaultInterfaces,
        Func::GetPrivateInterfaces,
        Func::GetPublicInterfaces,
        Func::GetPrivateIp,
        Func::GetPrivateIps,
        Func::GetPublicIp,
        Func::GetPublicIps,
        Func::GetInterfaceIp,
        Func::GetInterfaceIps,
        Func::Include,
        Func::Exclude,
        Func::Sort,
        Func::Unique,
        Func::Limit,
        Func::Offset,
        Func::Math,
        Func::Attr,
        Func::Join,
    ];

    pub(super) fn resolve(word: &str) -> Result<Func, SyntaxError> {
        if let Some(f) = Func::ALL.into_iter().find(|f| f.name() == word) {
            return Ok(f);
        }
        const CONTROL: [&str; 11] =
            ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil"];
        const GO_BUILTINS: [&str; 19] = [
            "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf", "println",
            "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
        ];
        if CONTROL.contains(&word) {
            Err(SyntaxError::Control(word.to_owned()))
        } else if GO_BUILTINS.contains(&word) {
            Err(SyntaxError::Builtin(word.to_owned()))
        } else {
            Err(SyntaxError::Undefined(word.to_owned()))
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Func::GetAllInterfaces => "GetAllInterfaces",
            Func::GetDefaultInterfaces => "GetDefaultInterfaces",
            Func::GetPrivateInterfaces => "GetPrivateInterfaces",
            Func::GetPublicInterfaces => "GetPublicInterfaces",
            Func::GetPrivateIp => "GetPrivateIP",
            Func::GetPrivateIps => "GetPrivateIPs",
            Func::GetPublicIp => "GetPublicIP",
            Func::GetPublicIps => "GetPublicIPs",
            Func::GetInterfaceIp => "GetInterfaceIP",
            Func::GetInterfaceIps => "GetInterfaceIPs",
            Func::Include => "include",
            Func::Exclude => "exclude",
            Func::Sort => "sort",
            Func::Unique => "unique",
            Func::Limit => "limit",
            Func::Offset => "offset",
            Func::Math => "math",
            Func::Attr => "attr",
            Func::Join => "join",
        }
    }

    fn params(self) -> &'static [Param] {
        use Param::*;
        match self {
            Func::GetAllInterfaces
            | Func::GetDefaultInterfaces
            | Func::GetPrivateInterfaces
            | Func::GetPublicInterfaces
            | Func::GetPrivateIp
            | Func::GetPrivateIps
            | Func::GetPublicIp
            | Func::GetPublicIps => &[],
            Func::GetInterfaceIp | Func::GetInterfaceIps => &[Str],
            Func::Include | Func::Exclude | Func::Math | Func::Join => &[Str, Str, List],
            Func::Sort | Func::Unique => &[Str, List],
            Func::Limit => &[Uint, List],
            Func::Offset => &[Int, List],
            Func::Attr => &[Str, Any],
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<IfAddr>),
}

impl Value {
    /// The Go type name, for error messages.
    pub(super) fn go_type(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Bool(_) => "bool",
            Value::List(_) => "sockaddr.IfAddrs",
        }
    }
}

/// Evaluates parsed pipelines against one interface list.
pub(super) struct Eval<'a> {
    pub(super) all: &'a [IfAddr],
    /// Names of the interfaces holding the default route (go-sockaddr matches by name).
    default_names: BTreeSet<&'a str>,
}

impl<'a> Eval<'a> {
    pub(super) fn new(all: &'a [IfAddr]) -> Eval<'a> {
        let default_names = all.iter().filter(|a| a.default_route).map(|a| a.name.as_str()).collect();
        Eval { all, default_names }
    }

    pub(super) fn pipeline(&self, p: &Pipeline) -> Result<Value, Fault> {
        let mut piped: Option<Value> = None;
        for cmd in &p.commands {
            piped = Some(self.command(cmd, piped.take())?);
        }
        piped.ok_or_else(|| Fault::parse(p.pos(), "missing value for command"))
    }

    fn command(&self, cmd: &Command, piped: Option<Value>) -> Result<Value, Fault> {
        let Some(head) = cmd.operands.first() else {
            return Err(Fault::parse(cmd.pos(), "missing value for command"));
        };
        match &head.kind {
            OperandKind::Func(f) => self.call(*f, head.pos, cmd, &cmd.operands[1..], piped),
            kind if cmd.operands.len() > 1 || piped.is_some() => Err(Fault {
                pos: head.pos,
                node: Some(kind.to_string()),
                msg: format!("can't give argument to non-function {kind}"),
            }),
            _ => self.operand(head),
        }
    }

    fn operand(&self, op: &Operand) -> Result<Value, Fault> {
        Ok(match &op.kind {
            OperandKind::Str(s, _) => Value::Str(s.clone()),
            OperandKind::Int(i, _) => Value::Int(*i),
            OperandKind::Bool(b) => Value::Bool(*b),
            OperandKind::Dot => Value::List(self.all.to_vec()),
            OperandKind::Pipe(p) => self.pipeline(p)?,
            OperandKind::Func(f) => {
                let cmd = Command { operands: Vec::new() };
                self.call(*f, op.pos, &cmd, &[], None)?
            }
        })
    }

    /// Calls `f` with `args` and then the piped value, checking count and types as Go does.
    fn call(
        &self,
        f: Func,
        pos: usize,
        cmd: &Command,
        args: &[Operand],
        piped: Option<Value>,
    ) -> Result<Value, Fault> {
        let params = f.params();
        let got = args.len() + usize::from(piped.is_some());
        if got != params.len() {
            let msg = format!("wrong number of args for {}: want {} got {got}", f.name(), params.len());
            return Err(Fault { pos, node: Some(f.name().to_string()), msg });
        }
        let mut values = Vec::with_capacity(params.len());
        for (op, &param) in args.iter().zip(params) {
            let value = self.operand(op)?;
            let literal = if op.kind.is_literal() { Some(op.kind.to_string()) } else { None };
            values.push(check_type(value, param, literal).map_err(|e| Fault {
                pos: op.pos,
                node: Some(op.kind.to_string()),
                msg: e.to_string(),
            })?);
        }
        if let (Some(value), Some(&param)) = (piped, params.last()) {
            let node = if cmd.operands.is_empty() { f.name().to_string() } else { cmd.to_string() };
            values.push(check_type(value, param, None).map_err(|e| Fault {
                pos,
                node: Some(node),
                msg: e.to_string(),
            })?);
        }
        self.apply(f, values).map_err(|e| {
            let node = if cmd.operands.is_empty() { f.name().to_string() } else { cmd.to_string() };
            Fault { pos, node: Some(node), msg: format!("error calling {}: {e}", f.name()) }
        })
    }

    fn apply(&self, f: Func, values: Vec<Value>) -> Result<Value, CallError> {
        use Value::{Int, List, Str};
        let out = match (f, values.as_slice()) {
            (Func::GetAllInterfaces, []) => List(self.all.to_vec()),
            (Func::GetDefaultInterfaces, []) => List(self.default_interfaces()?),
            (Func::GetPrivateInterfaces, []) => List(self.private_or_public(true)),
            (Func::GetPublicInterfaces, []) => List(self.private_or_public(false)),
            (Func::GetPrivateIp, []) => {
                Str(self.private_or_public(true).first().map(address).unwrap_or_default())
            }
            (Func::GetPublicIp, []) => {
                Str(self.private_or_public(false).first().map(address).unwrap_or_default())
            }
            (Func::GetPrivateIps, []) => Str(join_addresses(&self.ips(true))),
            (Func::GetPublicIps, []) => Str(join_addresses(&self.ips(false))),
            (Func::GetInterfaceIp, [Str(re)]) => {
                Str(self.interface_ips(re, true)?.first().map(address).unwrap_or_default())
            }
            (Func::GetInterfaceIps, [Str(re)]) => Str(join_addresses(&self.interface_ips(re, false)?)),
            (Func::Include, [Str(sel), Str(arg), List(l)]) => List(self.filter("include", sel, arg, l)?.0),
            (Func::Exclude, [Str(sel), Str(arg), List(l)]) => List(self.filter("exclude", sel, arg, l)?.1),
            (Func::Sort, [Str(keys), List(l)]) => List(self.sort_by_keys(keys, l.clone())?),
            (Func::Unique, [Str(attr), List(l)]) => List(unique(attr, l)?),
            (Func::Limit, [Int(n), List(l)]) => {
                List(l.iter().take(usize::try_from(*n).unwrap_or(usize::MAX)).cloned().collect())
            }
            (Func::Offset, [Int(n), List(l)]) => List(offset(*n, l)?),
            (Func::Math, [Str(op), Str(arg), List(l)]) => {
                List(l.iter().map(|a| math(op, arg, a)).collect::<Result<_, _>>()?)
            }
            (Func::Attr, [Str(attr), List(l)]) => Str(match l.first() {
                Some(a) => attribute(attr, a)?,
                None => String::new(),
            }),
            (Func::Attr, [Str(attr), other]) => {
                let shown = match other {
                    Str(s) => s.clone(),
                    Int(i) => i.to_string(),
                    Value::Bool(b) => b.to_string(),
                    List(_) => String::new(),
                };
                return Err(CallError::AttributeOfNonList {
                    attr: attr.clone(),
                    go_type: other.go_type(),
                    shown,
                });
            }
            (Func::Join, [Str(attr), Str(sep), List(l)]) => {
                Str(l.iter().map(|a| attribute(attr, a)).collect::<Result<Vec<_>, _>>()?.join(sep))
            }
            // SAFETY-INVARIANT: `call` checked the count and types against `params()`.
            (f, _) => return Err(CallError::Unchecked(f.name())),
        };
        Ok(out)
    }

    fn default_interfaces(&self) -> Result<Vec<IfAddr>, CallError> {
        if self.default_names.is_empty() {
            return Err(CallError::NoDefaultInterface);
        }
        Ok(self.all.iter().filter(|a| self.default_names.contains(a.name.as_str())).cloned().collect())
    }

    /// go-sockaddr's GetPrivateInterfaces / GetPublicInterfaces: forwardable, up, sorted
    /// default-first then by type then size, and inside (or outside) RFC 6890.
    fn private_or_public(&self, private: bool) -> Vec<IfAddr> {
        let candidates: Vec<IfAddr> =
            self.all.iter().filter(|a| is_forwardable(a) && a.flags.up).cloned().collect();
        let sorted = merge_sort(candidates, &|p, q| {
            self.cmp_default(p, q).then_with(|| cmp_type(p, q)).then_with(|| cmp_size(p, q))
        });
        sorted.into_iter().filter(|a| in_rfc(RFC_6890, a) == private).collect()
    }

    /// go-sockaddr's GetPrivateIPs / GetPublicIPs: every address sorted by type then size, inside
    /// RFC 6890 and forwardable (private), or outside RFC 6890 (public).
    fn ips(&self, private: bool) -> Vec<IfAddr> {
        let sorted = merge_sort(self.all.to_vec(), &|p, q| cmp_type(p, q).then_with(|| cmp_size(p, q)));
        sorted
            .into_iter()
            .filter(|a| in_rfc(RFC_6890, a) == private && (!private || is_forwardable(a)))
            .collect()
    }

    /// go-sockaddr's GetInterfaceIP(s): interfaces whose name matches `re`, sorted `+type,+size`;
    /// the singular form keeps forwardable addresses only.
    fn interface_ips(&self, re: &str, forwardable_only: bool) -> Result<Vec<IfAddr>, CallError> {
        let re = compile("name", re)?;
        let matched: Vec<IfAddr> = self
            .all
            .iter()
            .filter(|a| re.is_match(&a.name) && (!forwardable_only || is_forwardable(a)))
            .cloned()
            .collect();
        Ok(merge_sort(matched, &|p, q| cmp_type(p, q).then_with(|| cmp_size(p, q))))
    }

    /// `include`/`exclude`: returns (matched, remainder) as go-sockaddr's `IfBy*` functions do.
    pub(super) fn filter(
        &self,
        verb: &'static str,
        selector: &str,
        arg: &str,
        list: &[IfAddr],
    ) -> Result<(Vec<IfAddr>, Vec<IfAddr>), CallError> {
        let mut matched = Vec::new();
        let mut rest = Vec::new();
        let mut split =
            |keep: bool, a: &IfAddr| if keep { matched.push(a.clone()) } else { rest.push(a.clone()) };
        match selector.to_lowercase().as_str() {
            "address" => {
                let re = compile("address", arg)?;
                list.iter().for_each(|a| split(re.is_match(&sockaddr_string(a)), a));
            }
            "name" => {
                let re = compile("name", arg)?;
                list.iter().for_each(|a| split(re.is_match(&a.name), a));
            }
            "port" => {
                // Interface addresses carry no port; go-sockaddr matches the regexp against "0".
                let re = compile("port", arg)?;
                list.iter().for_each(|a| split(re.is_match("0"), a));
            }
            "flag" | "flags" => {
                let test = FlagTest::parse(arg)?;
                list.iter().for_each(|a| split(test.matches(a), a));
            }
            "network" => {
                for net in arg.split('|') {
                    let cidr = parse_network(net).ok_or_else(|| CallError::Network(net.to_owned()))?;
                    list.iter().for_each(|a| split(cidr.contains(a), a));
                }
            }
            "rfc" | "rfcs" => {
                for number in arg.split('|') {
                    let nets = rfc_networks(number)
                        .map_err(|source| CallError::Rfc { number: number.to_owned(), source })?;
                    list.iter().for_each(|a| split(in_rfc(nets, a), a));
                }
            }
            "size" => {
                let size: u64 = arg.parse().map_err(|_| CallError::Size(arg.to_owned()))?;
                for a in list {
                    match a.addr {
                        IpAddr::V4(_) if size > 32 => return Err(CallError::MaskSizeIpv4(size)),
                        IpAddr::V6(_) if size > 128 => return Err(CallError::MaskSizeIpv6(size)),
                        _ => split(u64::from(a.prefix_len) == size, a),
                    }
                }
            }
            "type" => {
                let lower = arg.to_lowercase();
                let types: Vec<&str> = lower.split('|').collect();
                if let Some(bad) = types.iter().find(|t| !matches!(**t, "ip" | "ipv4" | "ipv6" | "unix")) {
                    return Err(CallError::Type { bad: (*bad).to_owned(), arg: arg.to_owned() });
                }
                for a in list {
                    for t in &types {
                        let keep = match *t {
                            "ip" => true,
                            "ipv4" => a.addr.is_ipv4(),
                            "ipv6" => a.addr.is_ipv6(),
                            _ => false,
                        };
                        split(keep, a);
                    }
                }
            }
            _ => return Err(CallError::Selector { verb, selector: selector.to_owned() }),
        }
        Ok((matched, rest))
    }

    /// `sort "k1,-k2"`.
    fn sort_by_keys(&self, keys: &str, list: Vec<IfAddr>) -> Result<Vec<IfAddr>, CallError> {
        type Cmp<'e> = Box<dyn Fn(&IfAddr, &IfAddr) -> Ordering + 'e>;
        let mut cmps: Vec<Cmp<'_>> = Vec::new();
        for clause in keys.split(',') {
            let lower = clause.trim().to_lowercase();
            let (descending, key) = match lower.as_bytes().first() {
                Some(b'-') => (true, &lower[1..]),
                Some(b'+') => (false, &lower[1..]),
                _ => (false, lower.as_str()),
            };
            let cmp: Cmp<'_> = match key {
                "address" => Box::new(cmp_address),
                "default" => Box::new(|p, q| self.cmp_default(p, q)),
                "name" => Box::new(|p: &IfAddr, q: &IfAddr| p.name.cmp(&q.name)),
                "port" => Box::new(|_, _| Ordering::Equal),
                "private" => Box::new(cmp_private),
                "size" => Box::new(cmp_size),
                "type" => Box::new(cmp_type),
                _ => return Err(CallError::SortKey(clause.to_owned())),
            };
            cmps.push(if descending { Box::new(move |p, q| cmp(p, q).reverse()) } else { cmp });
        }
        Ok(merge_sort(list, &|p, q| {
            cmps.iter().map(|c| c(p, q)).find(|o| *o != Ordering::Equal).unwrap_or(Ordering::Equal)
        }))
    }

    fn cmp_default(&self, p: &IfAddr, q: &IfAddr) -> Ordering {
        let pd = self.default_names.contains(p.name.as_str());
        let qd = self.default_names.contains(q.name.as_str());
        qd.cmp(&pd)
    }
}
