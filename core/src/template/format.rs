//! Go's `fmt` as templates use it: `%v` of values, `print`/`println`, and a `printf` that
//! covers the verbs and flags templates use (`v s q d x X o b c t f F e E g G T %`), with Go's
//! `%!verb(type=value)` reports for mismatches.

use super::value::Value;

/// Go's `%v` of a float64: `strconv.FormatFloat(f, 'g', -1, 64)` (so 1e+06, not 1000000).
pub(super) fn format_float_v(f: f64) -> String {
    format_float_g(f, None)
}

/// `strconv.FormatFloat(f, 'g', prec, 64)`; `None` is the shortest representation.
fn format_float_g(f: f64, prec: Option<usize>) -> String {
    if let Some(special) = special_float(f) {
        return special;
    }
    let (digits, dp) = decimal_digits(f, prec.map(|p| p.max(1)));
    let nd = digits.len() as i64;
    let shortest = prec.is_none();
    let mut prec = prec.map_or(nd, |p| p.max(1) as i64);
    let mut eprec = prec;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if exp < -4 || exp >= eprec {
        if prec > nd {
            prec = nd;
        }
        return format!("{sign}{}", fmt_e(&digits, dp, (prec - 1).max(0) as usize, 'e'));
    }
    if prec > dp {
        prec = nd;
    }
    format!("{sign}{}", fmt_f(&digits, dp, (prec - dp).max(0) as usize))
}

fn special_float(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 { "+Inf".into() } else { "-Inf".into() })
    } else {
        None
    }
}

/// The decimal digits of |f| (no trailing zeros; empty for zero) and the decimal point
/// position, rounded to `significant` digits or shortest round-trip when `None`.
pub(super) fn decimal_digits(f: f64, significant: Option<usize>) -> (String, i64) {
    if f == 0.0 {
        return (String::new(), 0);
    }
    let text = match significant {
        Some(n) => format!("{:.*e}", n - 1, f.abs()),
        None => format!("{:e}", f.abs()),
    };
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0').to_string();
    (digits, exponent + 1)
}

pub(super) fn fmt_e(digits: &str, dp: i64, prec: usize, e: char) -> String {
    let bytes = digits.as_bytes();
    let mut out = String::new();
    out.push(bytes.first().map_or('0', |b| *b as char));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(bytes.get(i).map_or('0', |b| *b as char));
        }
    }
    let exp = if digits.is_empty() { 0 } else { dp - 1 };
    out.push(e);
    out.push(if exp < 0 { '-' } else { '+' });
    let abs = exp.unsigned_abs();
    if abs < 10 {
        out.push('0');
    }
    out.push_str(&abs.to_string());
    out
}

pub(super) fn fmt_f(digits: &str, dp: i64, prec: usize) -> String {
    let bytes = digits.as_bytes();
    let digit = |i: i64| -> char {
        if i >= 0 && (i as usize) < bytes.len() {
            bytes[i as usize] as char
        } else {
            '0'
        }
    };
    let mut out = String::new();
    if dp > 0 {
        for i in 0..dp {
            out.push(digit(i));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 0..prec as i64 {
            out.push(digit(dp + i));
        }
    }
    out
}

/// `fmt.Sprint`: operands joined, with a space between two operands when neither is a string.
pub(super) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        let is_string = matches!(arg, Value::String(_));
        if i > 0 && !is_string && !matches!(args[i - 1], Value::String(_)) {
            out.push(' ');
        }
        arg.write_go(&mut out, true);
    }
    out
}

/// `fmt.Sprintln`: operands joined by spaces, then a newline.
pub(super) fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        arg.write_go(&mut out, true);
    }
    out.push('\n');
    out
}

/// The flags, width and precision of one `%` directive.
#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// The largest width or precision accepted, as Go's `fmt` (`1e6`): beyond it Go reports
/// `%!(BADWIDTH)`, and it bounds the padding a template can ask for.
const WIDTH_MAX: usize = 1_000_000;

/// `fmt.Sprintf`.
pub(super) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next_arg = 0;
    let mut chars = format.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&(_, f)) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = read_number(&mut chars, args, &mut next_arg);
        if chars.peek().is_some_and(|&(_, c)| c == '.') {
            chars.next();
            spec.prec = Some(read_number(&mut chars, args, &mut next_arg).unwrap_or(0));
        }
        if spec.width.is_some_and(|w| w > WIDTH_MAX) || spec.prec.is_some_and(|p| p > WIDTH_MAX) {
            out.push_str("%!(BADWIDTH)");
            continue;
        }
        let Some((_, verb)) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next_arg += 1;
        out.push_str(&format_one(verb, spec, arg));
        // The caller refuses results over the limit; stop building one long before memory runs out.
        if out.len() > super::RESULT_BYTES_MAX {
            break;
        }
    }
    if next_arg < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, arg) in args[next_arg..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{}={}", arg.type_name(), arg.to_go_string()));
        }
        out.push(')');
    }
    out
}

fn read_number(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    args: &[Value],
    next_arg: &mut usize,
) -> Option<usize> {
    if chars.peek().is_some_and(|&(_, c)| c == '*') {
        chars.next();
        let arg = args.get(*next_arg);
        *next_arg += 1;
        return match arg {
            Some(Value::Int(i)) => usize::try_from(*i).ok(),
            _ => None,
        };
    }
    let mut number: Option<usize> = None;
    while let Some(&(_, c)) = chars.peek() {
        let Some(d) = c.to_digit(10) else { break };
        number = Some(number.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
        chars.next();
    }
    number
}

fn bad_verb(verb: char, arg: &Value) -> String {
    match arg {
        Value::Nil => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", arg.type_name(), arg.to_go_string()),
    }
}

fn format_one(verb: char, spec: Spec, arg: &Value) -> String {
    if verb == 'T' {
        return pad(spec, arg.type_name().to_string(), false);
    }
    match arg {
        Value::Bool(b) => match verb {
            'v' | 't' => pad(spec, b.to_string(), false),
            _ => bad_verb(verb, arg),
        },
        Value::Int(i) => format_integer(verb, spec, i128::from(*i), arg),
        Value::Uint(u) => format_integer(verb, spec, i128::from(*u), arg),
        Value::Float(f) => format_float(verb, spec, *f, arg),
        Value::String(s) => format_string(verb, spec, s, arg),
        Value::Nil => match verb {
            'v' => pad(spec, "<nil>".into(), false),
            _ => bad_verb(verb, arg),
        },
        Value::List(items) if verb != 'v' => {
            let inner: Vec<String> = items.iter().map(|v| format_one(verb, Spec::default(), v)).collect();
            pad(spec, format!("[{}]", inner.join(" ")), false)
        }
        Value::Map(entries) if verb != 'v' => {
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{}", k, format_one(verb, Spec::default(), v)))
                .collect();
            pad(spec, format!("map[{}]", inner.join(" ")), false)
        }
        _ => match verb {
            'v' | 's' => pad(spec, arg.to_go_string(), false),
            _ => bad_verb(verb, arg),
        },
    }
}

fn sign_prefix(spec: Spec, negative: bool) -> &'static str {
    if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn format_integer(verb: char, spec: Spec, i: i128, arg: &Value) -> String {
    let negative = i < 0;
    let abs = i.unsigned_abs();
    let (body, prefix) = match verb {
        'v' | 'd' => (abs.to_string(), ""),
        'x' => (format!("{abs:x}"), if spec.sharp { "0x" } else { "" }),
        'X' => (format!("{abs:X}"), if spec.sharp { "0X" } else { "" }),
        'o' => (format!("{abs:o}"), if spec.sharp { "0" } else { "" }),
        'O' => (format!("{abs:o}"), "0o"),
        'b' => (format!("{abs:b}"), ""),
        'c' => {
            let c = u32::try_from(i).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}');
            return pad(spec, c.to_string(), false);
        }
        'q' => {
            let c = u32::try_from(i).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}');
            return pad(spec, quote_rune(c), false);
        }
        'U' => return pad(spec, format!("U+{abs:04X}"), false),
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => return bad_verb(verb, arg),
        _ => return bad_verb(verb, arg),
    };
    let mut body = body;
    if let Some(p) = spec.prec {
        if body.len() < p {
            body = format!("{}{body}", "0".repeat(p - body.len()));
        }
        if p == 0 && abs == 0 {
            body.clear();
        }
    }
    let head = format!("{}{prefix}", sign_prefix(spec, negative));
    pad_number(spec, &head, &body, spec.prec.is_none())
}

fn quote_rune(c: char) -> String {
    match c {
        '\'' => "'\\''".into(),
        '"' => "'\"'".into(),
        _ => {
            let q = crate::go_quote::quote(&c.to_string());
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

fn format_float(verb: char, spec: Spec, f: f64, arg: &Value) -> String {
    if let Some(special) = special_float(f) {
        let text = if special == "+Inf" && !spec.plus { "+Inf".to_string() } else { special };
        return pad(spec, text, false);
    }
    let negative = f.is_sign_negative();
    let abs = f.abs();
    let body = match verb {
        'v' | 'g' | 'G' => {
            let text = format_float_g(abs, spec.prec);
            if verb == 'G' {
                text.to_uppercase()
            } else {
                text
            }
        }
        'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), abs),
        'e' | 'E' => {
            let (digits, dp) = decimal_digits(abs, Some(spec.prec.unwrap_or(6) + 1));
            fmt_e(&digits, dp, spec.prec.unwrap_or(6), verb)
        }
        _ => return bad_verb(verb, arg),
    };
    pad_number(spec, sign_prefix(spec, negative), &body, true)
}

fn format_string(verb: char, spec: Spec, s: &str, arg: &Value) -> String {
    let truncated: String = match spec.prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    };
    match verb {
        'v' | 's' => pad(spec, truncated, false),
        'q' => pad(
            spec,
            if spec.sharp && !truncated.contains('`') {
                format!("`{truncated}`")
            } else {
                crate::go_quote::quote(&truncated)
            },
            false,
        ),
        'x' => pad(spec, hex_bytes(&truncated, false, spec), false),
        'X' => pad(spec, hex_bytes(&truncated, true, spec), false),
        _ => bad_verb(verb, arg),
    }
}

fn hex_bytes(s: &str, upper: bool, spec: Spec) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        if spec.space && i > 0 {
            out.push(' ');
        }
        if spec.sharp && (spec.space || i == 0) {
            out.push_str(if upper { "0X" } else { "0x" });
        }
        if upper {
            out.push_str(&format!("{b:02X}"));
        } else {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// Pads `text` to the width with spaces (on the left, or the right with `-`).
fn pad(spec: Spec, text: String, _numeric: bool) -> String {
    let width = spec.width.unwrap_or(0);
    let len = text.chars().count();
    if len >= width {
        return text;
    }
    let fill = " ".repeat(width - len);
    if spec.minus {
        format!("{text}{fill}")
    } else {
        format!("{fill}{text}")
    }
}

/// Pads a number: zeros go between the sign and the digits (flag `0`, not with `-`).
fn pad_number(spec: Spec, head: &str, body: &str, zero_ok: bool) -> String {
    let width = spec.width.unwrap_or(0);
    let len = head.chars().count() + body.chars().count();
    if spec.zero && zero_ok && !spec.minus && len < width {
        return format!("{head}{}{body}", "0".repeat(width - len));
    }
    pad(spec, format!("{head}{body}"), true)
}
