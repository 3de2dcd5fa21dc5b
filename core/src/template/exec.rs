//! The executor: Go's `text/template/exec.go` over [`Value`]s.

use std::collections::BTreeMap;

use super::builtins::{self, Ty};
use super::parse::{Arg, Command, List, Node, Number, Pipe};
use super::value::Value;
use super::{
    Answer, Dependency, ExecError, RenderOptions, Rendered, Source, Template, BYTES_PER_STEP,
    EXEC_NESTING_MAX, EXEC_STEPS_MAX, OUTPUT_BYTES_MAX, RESULT_BYTES_MAX, TEMPLATE_CALL_DEPTH_MAX,
};

/// How a walk ends early: an error, or `{{break}}`/`{{continue}}` unwinding to their `range`.
pub(super) enum Flow {
    Error(ExecError),
    Break,
    Continue,
}

pub(super) type Exec<T> = Result<T, Flow>;

/// The node an error is reported at (Go's `state.node`).
#[derive(Clone, Copy)]
enum At<'a> {
    Nothing,
    Node(&'a Node),
    Pipe(&'a Pipe),
    Arg(&'a Arg),
    Command(&'a Command),
}

/// Where a value came from, for Go's distinctions between a missing map key (no value), a
/// present nil (an error to index into) and a value read out of a `map[string]interface{}`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Plain,
    MapEntry,
    MissingKey,
}

/// The state of one render.
pub(super) struct State<'a> {
    pub(super) template: &'a Template,
    name: String,
    vars: Vec<(String, Value)>,
    depth: usize,
    pub(super) out: String,
    pub(super) source: &'a mut dyn Source,
    pub(super) options: &'a RenderOptions,
    used: Vec<Dependency>,
    missing: Vec<Dependency>,
    pub(super) scratch: BTreeMap<String, Value>,
    at: At<'a>,
    steps: u64,
    /// Whether dot is an element of a list or map being ranged over: Go then sees an
    /// `interface {}` (its messages name that type, and a nil element is an error to index).
    dot_in_interface: bool,
    /// How deep the walk is in control structures, pipelines and template calls.
    nesting: usize,
}

pub(super) fn render(
    template: &Template,
    data: &Value,
    source: &mut dyn Source,
    options: &RenderOptions,
) -> Result<Rendered, ExecError> {
    let mut state = State {
        template,
        name: template.name.clone(),
        vars: vec![("$".to_string(), data.clone())],
        depth: 0,
        out: String::new(),
        source,
        options,
        used: Vec::new(),
        missing: Vec::new(),
        scratch: BTreeMap::new(),
        at: At::Nothing,
        steps: 0,
        dot_in_interface: false,
        nesting: 0,
    };
    let Some(root) = template.trees.get(&template.name) else {
        return Err(ExecError {
            text: format!(
                "template: {}: {} is an incomplete or empty template",
                template.name,
                crate::go_quote::quote(&template.name)
            ),
        });
    };
    match state.walk_list(data, root) {
        Ok(()) => Ok(Rendered { output: state.out, used: state.used, missing: state.missing }),
        Err(Flow::Error(e)) => Err(e),
        // The parser refuses `{{break}}`/`{{continue}}` outside `range`; should one escape,
        // it is reported, never a panic.
        Err(Flow::Break | Flow::Continue) => Err(ExecError {
            text: format!(
                "template: {}: {{{{break}}}} or {{{{continue}}}} outside {{{{range}}}}",
                template.name
            ),
        }),
    }
}

impl<'a> State<'a> {
    /// Go's `state.errorf`: the message with the template, line, column and node.
    pub(super) fn error(&self, message: impl std::fmt::Display) -> Flow {
        let (pos, context) = match self.at {
            At::Nothing => {
                return Flow::Error(ExecError { text: format!("template: {}: {message}", self.name) });
            }
            At::Node(n) => (node_pos(n), n.to_string()),
            At::Pipe(p) => (p.pos, p.to_string()),
            At::Arg(a) => (a.pos(), a.to_string()),
            At::Command(c) => (c.pos, c.to_string()),
        };
        let text = &self.template.text;
        let before = &text[..pos.min(text.len())];
        let line = 1 + before.matches('\n').count();
        let col = match before.rfind('\n') {
            Some(i) => pos - (i + 1),
            None => pos,
        };
        Flow::Error(ExecError {
            text: format!(
                "template: {}:{line}:{col}: executing {} at <{context}>: {message}",
                self.template.name,
                crate::go_quote::quote(&self.name)
            ),
        })
    }

    fn step(&mut self) -> Exec<()> {
        self.steps += 1;
        if self.steps > EXEC_STEPS_MAX {
            return Err(self.error(format!("exceeded maximum evaluation steps ({EXEC_STEPS_MAX})")));
        }
        Ok(())
    }

    /// Counts a function's result against the step budget (one step per element, or per
    /// [`BYTES_PER_STEP`] bytes), so that a cheap-looking call in a loop cannot do unbounded work.
    fn charge(&mut self, name: &str, value: &Value) -> Exec<()> {
        let cost = match value {
            Value::String(s) => {
                if s.len() > RESULT_BYTES_MAX {
                    return Err(self.error(format!(
                        "error calling {name}: result of {} bytes is over the limit of {RESULT_BYTES_MAX}",
                        s.len()
                    )));
                }
                s.len() / BYTES_PER_STEP
            }
            Value::List(items) => items.len(),
            Value::Map(entries) => entries.len(),
            _ => 0,
        };
        self.steps += cost as u64;
        self.step()
    }

    pub(super) fn write(&mut self, text: &str) -> Exec<()> {
        if self.out.len() + text.len() > OUTPUT_BYTES_MAX {
            return Err(self.error(format!("output exceeds {OUTPUT_BYTES_MAX} bytes")));
        }
        self.out.push_str(text);
        Ok(())
    }

    /// Records a dependency as used and asks the source; `None` means pending (now missing).
    pub(super) fn query(&mut self, dependency: Dependency) -> Option<Value> {
        let answer = self.source.query(&dependency);
        if !self.used.contains(&dependency) {
            self.used.push(dependency.clone());
        }
        match answer {
            Answer::Ready(value) => Some(value),
            Answer::Pending => {
                self.mark_missing(dependency);
                None
            }
        }
    }

    /// Holds the render back on `dependency` (`key` on an absent key, empty `safeLs`).
    pub(super) fn mark_missing(&mut self, dependency: Dependency) {
        if !self.missing.contains(&dependency) {
            self.missing.push(dependency);
        }
    }

    fn walk_list(&mut self, dot: &Value, list: &'a List) -> Exec<()> {
        for node in &list.nodes {
            self.walk(dot, node)?;
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Value, node: &'a Node) -> Exec<()> {
        self.step()?;
        if matches!(node, Node::Text(_) | Node::Action(_) | Node::Break { .. } | Node::Continue { .. }) {
            return self.walk_node(dot, node);
        }
        // Control structures and template calls recurse: bound the depth of the Rust stack.
        self.nesting += 1;
        if self.nesting > EXEC_NESTING_MAX {
            self.at = At::Node(node);
            return Err(self.error(format!("exceeded maximum nesting depth ({EXEC_NESTING_MAX})")));
        }
        let result = self.walk_node(dot, node);
        self.nesting -= 1;
        result
    }

    fn walk_node(&mut self, dot: &Value, node: &'a Node) -> Exec<()> {
        self.at = At::Node(node);
        match node {
            Node::Text(text) => self.write(text),
            Node::Action(pipe) => {
                let value = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.at = At::Node(node);
                    self.print_value(&value)?;
                }
                Ok(())
            }
            Node::If(c) => {
                let mark = self.vars.len();
                let value = self.eval_pipeline(dot, &c.pipe)?;
                let result = if value.is_true() {
                    self.walk_list(dot, &c.list)
                } else if let Some(else_list) = &c.else_list {
                    self.walk_list(dot, else_list)
                } else {
                    Ok(())
                };
                self.vars.truncate(mark);
                result
            }
            Node::With(c) => {
                let mark = self.vars.len();
                let value = self.eval_pipeline(dot, &c.pipe)?;
                let result = if value.is_true() {
                    let saved = std::mem::replace(&mut self.dot_in_interface, false);
                    let result = self.walk_list(&value, &c.list);
                    self.dot_in_interface = saved;
                    result
                } else if let Some(else_list) = &c.else_list {
                    self.walk_list(dot, else_list)
                } else {
                    Ok(())
                };
                self.vars.truncate(mark);
                result
            }
            Node::Range(c) => {
                let mark = self.vars.len();
                let result = self.walk_range(dot, c);
                self.vars.truncate(mark);
                result
            }
            Node::Template { name, pipe, .. } => self.walk_template(dot, node, name, pipe.as_ref()),
            Node::Break { .. } => Err(Flow::Break),
            Node::Continue { .. } => Err(Flow::Continue),
        }
    }

    fn walk_range(&mut self, dot: &Value, c: &'a super::parse::Control) -> Exec<()> {
        let value = self.eval_pipeline(dot, &c.pipe)?;
        let decls = c.pipe.decl.len();
        let mark = self.vars.len();
        let mut ran = false;
        let in_interface = matches!(value, Value::List(_) | Value::Map(_));
        let mut iterate = |state: &mut Self, index: Value, elem: Value| -> Exec<bool> {
            ran = true;
            state.step()?;
            // Go's `setTopVar`: the element goes to the top variable, the index below it. With
            // `=` instead of `:=` these are whatever variables are on top (as in Go), and with
            // `$` itself there may be fewer than two: then nothing is set, rather than a panic.
            if decls > 0 {
                if let Some(slot) = mark.checked_sub(1).and_then(|i| state.vars.get_mut(i)) {
                    slot.1 = elem.clone();
                }
            }
            if decls > 1 {
                if let Some(slot) = mark.checked_sub(2).and_then(|i| state.vars.get_mut(i)) {
                    slot.1 = index;
                }
            }
            let saved = std::mem::replace(&mut state.dot_in_interface, in_interface);
            let result = state.walk_list(&elem, &c.list);
            state.dot_in_interface = saved;
            state.vars.truncate(mark);
            match result {
                Ok(()) | Err(Flow::Continue) => Ok(true),
                Err(Flow::Break) => Ok(false),
                Err(e) => Err(e),
            }
        };
        match &value {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !iterate(self, Value::Int(i as i64), item.clone())? {
                        break;
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter() {
                    if !iterate(self, Value::String(k.clone()), v.clone())? {
                        break;
                    }
                }
            }
            // Go 1.22: `range` over an int counts from 0.
            Value::Int(n) => {
                for i in 0..*n {
                    if !iterate(self, Value::Int(i), Value::Int(i))? {
                        break;
                    }
                }
            }
            Value::Nil => {}
            other => return Err(self.error(format!("range can't iterate over {}", other.to_go_string()))),
        }
        if !ran {
            if let Some(else_list) = &c.else_list {
                return self.walk_list(dot, else_list);
            }
        }
        Ok(())
    }

    fn walk_template(&mut self, dot: &Value, node: &'a Node, name: &str, pipe: Option<&'a Pipe>) -> Exec<()> {
        self.at = At::Node(node);
        if !self.template.trees.contains_key(name) {
            return Err(self.error(format!("template {} not defined", crate::go_quote::quote(name))));
        }
        let new_dot = match pipe {
            Some(p) => self.eval_pipeline(dot, p)?,
            None => Value::Nil,
        };
        self.at = At::Node(node);
        self.call_template(name, &new_dot)
    }

    /// Runs the template `name` with `dot` in a fresh variable scope (`{{template}}`,
    /// `executeTemplate`).
    pub(super) fn call_template(&mut self, name: &str, dot: &Value) -> Exec<()> {
        let template = self.template;
        let Some(tree) = template.trees.get(name) else {
            return Err(self.error(format!("template {} not defined", crate::go_quote::quote(name))));
        };
        if self.depth >= TEMPLATE_CALL_DEPTH_MAX {
            return Err(self.error(format!("exceeded maximum template depth ({TEMPLATE_CALL_DEPTH_MAX})")));
        }
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$".to_string(), dot.clone())]);
        let saved_name = std::mem::replace(&mut self.name, name.to_string());
        self.depth += 1;
        let saved_in_interface = std::mem::replace(&mut self.dot_in_interface, false);
        let result = match self.walk_list(dot, tree) {
            // The parser keeps `{{break}}`/`{{continue}}` inside a `range` of their own tree;
            // should one escape, it is an error here rather than a jump in the caller.
            Err(Flow::Break | Flow::Continue) => {
                Err(self.error("{{break}} or {{continue}} outside {{range}}"))
            }
            other => other,
        };
        self.dot_in_interface = saved_in_interface;
        self.depth -= 1;
        self.name = saved_name;
        self.vars = saved_vars;
        result
    }

    fn print_value(&mut self, value: &Value) -> Exec<()> {
        let text = match value {
            Value::Nil => "<no value>".to_string(),
            other => other.to_go_string(),
        };
        self.write(&text)
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &'a Pipe) -> Exec<Value> {
        self.nesting += 1;
        if self.nesting > EXEC_NESTING_MAX {
            return Err(self.error(format!("exceeded maximum nesting depth ({EXEC_NESTING_MAX})")));
        }
        let result = self.eval_pipeline_inner(dot, pipe);
        self.nesting -= 1;
        result
    }

    fn eval_pipeline_inner(&mut self, dot: &Value, pipe: &'a Pipe) -> Exec<Value> {
        self.at = At::Pipe(pipe);
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or_default();
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone())?;
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn set_var(&mut self, name: &str, value: Value) -> Exec<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = value;
                Ok(())
            }
            None => Err(self.error(format!("undefined variable: {name}"))),
        }
    }

    fn var_value(&self, name: &str) -> Exec<Value> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.error(format!("undefined variable: {name}"))),
        }
    }

    fn not_a_function(&self, args: &[Arg], final_value: &Option<Value>) -> Exec<()> {
        if args.len() > 1 || final_value.is_some() {
            return Err(self.error(format!("can't give argument to non-function {}", args[0])));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &'a Command, final_value: Option<Value>) -> Exec<Value> {
        self.step()?;
        let first = &cmd.args[0];
        match first {
            Arg::Field { idents, .. } => {
                self.at = At::Arg(first);
                let receiver = (dot.clone(), self.dot_origin());
                self.eval_field_chain(dot, receiver, first, idents, &cmd.args, final_value)
            }
            Arg::Chain { node, fields, .. } => {
                self.eval_chain(dot, first, node, fields, &cmd.args, final_value)
            }
            Arg::Identifier { name, .. } => {
                self.at = At::Arg(first);
                self.eval_function(dot, name, At::Command(cmd), &cmd.args, final_value)
            }
            Arg::Pipe(pipe) => {
                self.at = At::Command(cmd);
                self.not_a_function(&cmd.args, &final_value)?;
                self.eval_pipeline(dot, pipe)
            }
            Arg::Variable { idents, .. } => self.eval_variable(dot, first, idents, &cmd.args, final_value),
            _ => {
                self.at = At::Arg(first);
                self.not_a_function(&cmd.args, &final_value)?;
                match first {
                    Arg::Bool { value, .. } => Ok(Value::Bool(*value)),
                    Arg::Dot { .. } => Ok(dot.clone()),
                    Arg::Nil { .. } => Err(self.error("nil is not a command")),
                    Arg::Number { number, .. } => self.ideal_constant(number),
                    Arg::String { text, .. } => Ok(Value::String(text.clone())),
                    _ => Err(self.error(format!(
                        "can't evaluate command {}",
                        crate::go_quote::quote(&first.to_string())
                    ))),
                }
            }
        }
    }

    fn ideal_constant(&self, number: &Number) -> Exec<Value> {
        let text = &number.text;
        let is_hex_int = text.len() > 2
            && (text.starts_with("0x") || text.starts_with("0X"))
            && !text.contains(['p', 'P']);
        let is_rune = text.starts_with('\'');
        if number.float.is_some() && !is_hex_int && !is_rune && text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Ok(Value::Float(number.float.unwrap_or_default()));
        }
        if let Some(i) = number.int {
            return Ok(Value::Int(i));
        }
        if number.uint.is_some() {
            return Err(self.error(format!("{text} overflows int")));
        }
        Ok(Value::Nil)
    }

    fn eval_chain(
        &mut self,
        dot: &Value,
        chain: &'a Arg,
        node: &'a Arg,
        fields: &'a [String],
        args: &'a [Arg],
        final_value: Option<Value>,
    ) -> Exec<Value> {
        self.at = At::Arg(chain);
        if let Arg::Nil { .. } = node {
            return Err(self.error(format!("indirection through explicit nil in {chain}")));
        }
        let receiver = self.eval_arg(dot, Ty::Any, node)?;
        self.eval_field_chain(dot, (receiver, Origin::Plain), chain, fields, args, final_value)
    }

    fn eval_variable(
        &mut self,
        dot: &Value,
        node: &'a Arg,
        idents: &'a [String],
        args: &'a [Arg],
        final_value: Option<Value>,
    ) -> Exec<Value> {
        self.at = At::Arg(node);
        let value = self.var_value(&idents[0])?;
        if idents.len() == 1 {
            self.not_a_function(args, &final_value)?;
            return Ok(value);
        }
        self.eval_field_chain(dot, (value, Origin::Plain), node, &idents[1..], args, final_value)
    }

    fn dot_origin(&self) -> Origin {
        if self.dot_in_interface {
            Origin::MapEntry
        } else {
            Origin::Plain
        }
    }

    fn eval_field_chain(
        &mut self,
        dot: &Value,
        receiver: (Value, Origin),
        node: &'a Arg,
        idents: &'a [String],
        args: &'a [Arg],
        final_value: Option<Value>,
    ) -> Exec<Value> {
        let mut receiver = receiver;
        let last = idents.len() - 1;
        for ident in &idents[..last] {
            receiver = self.eval_field(dot, ident, node, &[], None, receiver)?;
        }
        Ok(self.eval_field(dot, &idents[last], node, args, final_value, receiver)?.0)
    }

    fn eval_field(
        &mut self,
        dot: &Value,
        field: &str,
        node: &'a Arg,
        args: &'a [Arg],
        final_value: Option<Value>,
        receiver: (Value, Origin),
    ) -> Exec<(Value, Origin)> {
        let (receiver, origin) = receiver;
        let has_args = args.len() > 1 || final_value.is_some();
        let type_name = if origin == Origin::MapEntry { "interface {}" } else { receiver.type_name() };
        match &receiver {
            Value::Nil if origin == Origin::MapEntry => {
                Err(self.error(format!("nil pointer evaluating interface {{}}.{field}")))
            }
            Value::Nil => {
                if self.options.error_on_missing_key {
                    return Err(
                        self.error(format!("nil data; no entry for key {}", crate::go_quote::quote(field)))
                    );
                }
                Ok((Value::Nil, Origin::MissingKey))
            }
            Value::Map(entries) => {
                if has_args {
                    return Err(self.error(format!("{field} is not a method but has arguments")));
                }
                match entries.get(field) {
                    Some(v) => Ok((v.clone(), Origin::MapEntry)),
                    None if self.options.error_on_missing_key => {
                        Err(self.error(format!("map has no entry for key {}", crate::go_quote::quote(field))))
                    }
                    None => Ok((Value::Nil, Origin::MissingKey)),
                }
            }
            Value::Record(record) => match record.field(field) {
                Some(v) if has_args => {
                    let _ = v;
                    Err(self.error(format!("{field} has arguments but cannot be invoked as function")))
                }
                Some(v) => Ok((v.clone(), Origin::Plain)),
                None => Err(self.error(format!("can't evaluate field {field} in type {type_name}"))),
            },
            Value::Scratch => {
                let name = format!("scratch.{field}");
                if builtins::signature(&name).is_none() {
                    return Err(self.error(format!("can't evaluate field {field} in type {type_name}")));
                }
                Ok((self.eval_call(dot, &name, field, At::Arg(node), args, final_value)?, Origin::Plain))
            }
            _ => Err(self.error(format!("can't evaluate field {field} in type {type_name}"))),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        name: &str,
        call_at: At<'a>,
        args: &'a [Arg],
        final_value: Option<Value>,
    ) -> Exec<Value> {
        if builtins::signature(name).is_none() {
            return Err(self.error(format!("{} is not a defined function", crate::go_quote::quote(name))));
        }
        self.eval_call(dot, name, name, call_at, args, final_value)
    }

    /// Go's `evalCall`: checks the argument count, evaluates the arguments against the
    /// parameter types, and calls. `args[0]` is the function's own node.
    fn eval_call(
        &mut self,
        dot: &Value,
        key: &str,
        name: &str,
        call_at: At<'a>,
        args: &'a [Arg],
        final_value: Option<Value>,
    ) -> Exec<Value> {
        // SAFETY-INVARIANT: callers look the signature up before calling.
        let sig = builtins::signature(key).expect("signature checked by caller");
        let args = if args.is_empty() { args } else { &args[1..] };
        let num_in = args.len() + usize::from(final_value.is_some());
        match sig.variadic {
            Some(_) if num_in < sig.params.len() => {
                return Err(self.error(format!(
                    "wrong number of args for {name}: want at least {} got {}",
                    sig.params.len(),
                    args.len()
                )));
            }
            None if num_in != sig.params.len() => {
                return Err(self.error(format!(
                    "wrong number of args for {name}: want {} got {num_in}",
                    sig.params.len()
                )));
            }
            _ => {}
        }
        if key == "and" || key == "or" {
            return self.eval_and_or(dot, key == "or", args, final_value);
        }
        let mut argv = Vec::with_capacity(num_in);
        for (i, arg) in args.iter().enumerate() {
            let ty = sig.params.get(i).copied().or(sig.variadic).unwrap_or(Ty::Any);
            argv.push(self.eval_arg(dot, ty, arg)?);
        }
        if let Some(v) = final_value {
            let ty = sig.params.get(args.len()).copied().or(sig.variadic).unwrap_or(Ty::Any);
            argv.push(self.validate_type(v, ty)?);
        }
        if self.is_denied(name) {
            self.at = call_at;
            return Err(self.error(format!("error calling {name}: function is disabled")));
        }
        match builtins::call(self, key, argv) {
            Ok(v) => {
                // Go's error context stays on the last argument after a successful call.
                let before = std::mem::replace(&mut self.at, call_at);
                self.charge(name, &v)?;
                self.at = before;
                Ok(v)
            }
            Err(super::builtins::CallError::Message(message)) => {
                self.at = call_at;
                Err(self.error(format!("error calling {name}: {message}")))
            }
            Err(super::builtins::CallError::Flow(flow)) => Err(flow),
        }
    }

    fn is_denied(&self, name: &str) -> bool {
        self.options.function_denylist.iter().any(|pattern| glob_match(pattern, name))
    }

    fn eval_and_or(
        &mut self,
        dot: &Value,
        is_or: bool,
        args: &'a [Arg],
        final_value: Option<Value>,
    ) -> Exec<Value> {
        let mut value = Value::Nil;
        for arg in args {
            value = self.eval_arg(dot, Ty::Any, arg)?;
            if value.is_true() == is_or {
                return Ok(value);
            }
        }
        if let Some(v) = final_value {
            value = v;
        }
        Ok(value)
    }

    /// Go's `evalArg`: an argument evaluated for a parameter of type `ty`.
    pub(super) fn eval_arg(&mut self, dot: &Value, ty: Ty, arg: &'a Arg) -> Exec<Value> {
        self.at = At::Arg(arg);
        let value = match arg {
            Arg::Dot { .. } => dot.clone(),
            Arg::Nil { .. } => {
                if ty.can_be_nil() {
                    return Ok(Value::Nil);
                }
                return Err(self.error(format!("cannot assign nil to {}", ty.go_name())));
            }
            Arg::Field { idents, .. } => {
                let receiver = (dot.clone(), self.dot_origin());
                self.eval_field_chain(dot, receiver, arg, idents, std::slice::from_ref(arg), None)?
            }
            Arg::Variable { idents, .. } => self.eval_variable(dot, arg, idents, &[], None)?,
            Arg::Pipe(pipe) => self.eval_pipeline(dot, pipe)?,
            Arg::Identifier { name, .. } => self.eval_function(dot, name, At::Arg(arg), &[], None)?,
            Arg::Chain { node, fields, .. } => self.eval_chain(dot, arg, node, fields, &[], None)?,
            Arg::Bool { value, .. } => {
                return match ty {
                    Ty::Any | Ty::Bool => Ok(Value::Bool(*value)),
                    _ => Err(self.error(format!("expected {}; found {arg}", ty.expected_word()))),
                };
            }
            Arg::String { text, .. } => {
                return match ty {
                    Ty::Any | Ty::String => Ok(Value::String(text.clone())),
                    _ => Err(self.error(format!("expected {}; found {arg}", ty.expected_word()))),
                };
            }
            Arg::Number { number, .. } => return self.eval_number_arg(ty, arg, number),
        };
        self.validate_type(value, ty)
    }

    fn eval_number_arg(&self, ty: Ty, arg: &Arg, number: &Number) -> Exec<Value> {
        match ty {
            Ty::Any => self.ideal_constant(number),
            Ty::Int if number.int.is_some() => Ok(Value::Int(number.int.unwrap_or_default())),
            _ => Err(self.error(format!("expected {}; found {arg}", ty.expected_word()))),
        }
    }

    /// Go's `validateType`: whether a computed value fits the parameter.
    fn validate_type(&self, value: Value, ty: Ty) -> Exec<Value> {
        if let Value::Nil = value {
            if ty.can_be_nil() {
                return Ok(value);
            }
            return Err(self.error(format!("invalid value; expected {}", ty.go_name())));
        }
        if ty.accepts(&value) {
            return Ok(value);
        }
        Err(self.error(format!("wrong type for value; expected {}; got {}", ty.go_name(), value.type_name())))
    }
}

fn node_pos(node: &Node) -> usize {
    match node {
        Node::Text(_) => 0,
        Node::Action(p) => p.pos,
        Node::If(c) | Node::Range(c) | Node::With(c) => c.pipe.pos,
        Node::Template { pos, .. } | Node::Break { pos } | Node::Continue { pos } => *pos,
    }
}

/// consul-template's `function_denylist` globs: `*` matches any run of characters.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else { return false };
            (0..=rest.len()).filter(|i| rest.is_char_boundary(*i)).any(|i| glob_match(tail, &rest[i..]))
        }
    }
}
