//! The views of the registry: go-metrics' in-memory JSON (`/v1/agent/metrics`) and the
//! Prometheus text, with Go's number and string formatting.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use super::metrics::Kind;
use super::registry::{lock, Registry, State};
use super::{GO_G_EXPONENT_MAX, INTERVAL, INTERVAL_NS, QUANTILES};

impl Registry {
    pub(super) fn json(&self, now: u64, pretty: bool) -> String {
        // Asking begins the running interval, as go-metrics' `Data` does.
        self.begin_interval(now / INTERVAL_NS);
        let shown = {
            let intervals = lock(&self.intervals);
            match intervals.len() {
                0 | 1 => intervals.back().copied().unwrap_or(now / INTERVAL_NS),
                n => intervals[n - 2],
            }
        };
        self.interval_json(shown, pretty)
    }

    /// The JSON summary of interval `shown` (in intervals since the epoch).
    pub(super) fn interval_json(&self, shown: u64, pretty: bool) -> String {
        let settings = self.settings();
        let (mut gauges, mut counters, mut samples) = (Vec::new(), Vec::new(), Vec::new());
        for series in self.all() {
            let Some(slot) = lock(&series.state).slot(shown) else { continue };
            let name = settings.full_name(series.kind, &series.name).replace(' ', "_");
            // go-metrics sorts by the key: the name, then `;label=value` for each label.
            let mut sort_key = name.clone();
            for (label, value) in series.labels.iter() {
                let _ = write!(sort_key, ";{label}={}", value.replace(' ', "_"));
            }
            let mut labels: Vec<(String, Json)> = series
                .labels
                .iter()
                .map(|(label, value)| ((*label).to_owned(), Json::Str(value.to_string())))
                .collect();
            labels.sort_by(|a, b| a.0.cmp(&b.0));
            labels.dedup_by(|a, b| a.0 == b.0);
            let labels = Json::Object(labels);
            match series.kind {
                Kind::Gauge if slot.gauge.is_finite() => gauges.push((
                    sort_key,
                    Json::object([
                        ("Name", Json::Str(name)),
                        ("Value", Json::Number(json_f32(slot.gauge))),
                        ("Labels", labels),
                    ]),
                )),
                Kind::Gauge => {}
                Kind::Counter | Kind::Sample => {
                    let entry = Json::object([
                        ("Name", Json::Str(name)),
                        ("Count", Json::Number(slot.count.to_string())),
                        ("Rate", Json::Number(json_f64(slot.sum / INTERVAL.as_secs_f64()))),
                        ("Sum", Json::Number(json_f64(slot.sum))),
                        ("Min", Json::Number(json_f64(slot.min))),
                        ("Max", Json::Number(json_f64(slot.max))),
                        ("Mean", Json::Number(json_f64(slot.mean()))),
                        ("Stddev", Json::Number(json_f64(slot.stddev()))),
                        ("Labels", labels),
                    ]);
                    if series.kind == Kind::Counter {
                        counters.push((sort_key, entry));
                    } else {
                        samples.push((sort_key, entry));
                    }
                }
            }
        }
        let sorted = |mut entries: Vec<(String, Json)>| {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Array(entries.into_iter().map(|(_, entry)| entry).collect())
        };
        let summary = Json::object([
            ("Timestamp", Json::Str(go_utc(shown * INTERVAL.as_secs()))),
            ("Gauges", sorted(gauges)),
            ("PrecisionGauges", Json::Array(Vec::new())),
            ("Points", Json::Array(Vec::new())),
            ("Counters", sorted(counters)),
            ("Samples", sorted(samples)),
        ]);
        let mut out = String::new();
        summary.render(&mut out, pretty.then_some(0));
        if pretty {
            out.push('\n');
        }
        out
    }

    pub(super) fn prometheus(&self, now: u64) -> String {
        self.sweep(now);
        let settings = self.settings();
        let retention_ns = settings.retention.as_nanos() as u64;
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for series in self.all() {
            let state = lock(&series.state);
            let live = state.recorded && now.saturating_sub(state.updated) <= retention_ns;
            let help = series.metric.filter(|metric| metric.declared).map(|metric| metric.help);
            let mut labels: Vec<(&'static str, &str)> =
                series.labels.iter().map(|(label, value)| (*label, &**value)).collect();
            labels.sort_by_key(|(label, _)| *label);
            let value = |state: &State| match series.kind {
                Kind::Counter => Sampled::Counter(state.total),
                Kind::Gauge => Sampled::Gauge(f64::from(state.gauge)),
                Kind::Sample => Sampled::Summary {
                    quantiles: state.window.as_ref().map_or([f64::NAN; 3], |window| window.quantiles(now)),
                    sum: state.total,
                    count: state.count,
                },
            };
            let plain = settings.full_name(Kind::Counter, &series.name);
            let named = settings.full_name(series.kind, &series.name);
            // go-metrics gives a series the help declared for its name, else the name itself.
            let mut add = |name: &str, help: Option<&str>, sampled: Sampled| {
                let name = prometheus_name(name);
                if !valid_prometheus_name(&name) {
                    return;
                }
                let family = families.entry(name.clone()).or_insert_with(|| Family {
                    kind: series.kind,
                    help: help.map_or_else(|| name.clone(), str::to_owned),
                    samples: Vec::new(),
                });
                // A counter and a gauge whose names mangle alike: the first one wins.
                if family.kind == series.kind {
                    family
                        .samples
                        .push((labels.iter().map(|(l, v)| (*l, (*v).to_owned())).collect(), sampled));
                }
            };
            if series.pinned && named != plain {
                // A declared gauge with the host name in live names: the declared one, unlabeled
                // and without the host name, keeps its initial zero (Consul shows both).
                add(&plain, help, Sampled::Gauge(0.0));
                if live && series.allowed(self) {
                    add(&named, None, value(&state));
                }
            } else if series.pinned || (live && series.allowed(self)) {
                add(&named, help, value(&state));
            }
        }
        let mut text = String::new();
        for (name, mut family) in families {
            family.samples.sort_by(|a, b| {
                a.0.len()
                    .cmp(&b.0.len())
                    .then_with(|| a.0.iter().map(|(_, v)| v).cmp(b.0.iter().map(|(_, v)| v)))
            });
            let _ = writeln!(text, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(text, "# TYPE {name} {}", family.kind.prometheus_type());
            for (labels, sampled) in &family.samples {
                match sampled {
                    Sampled::Counter(value) | Sampled::Gauge(value) => {
                        let _ = writeln!(text, "{name}{} {}", label_set(labels, None), go_float_g(*value));
                    }
                    Sampled::Summary { quantiles, sum, count } => {
                        for (quantile, value) in QUANTILES.iter().zip(quantiles) {
                            let _ = writeln!(
                                text,
                                "{name}{} {}",
                                label_set(labels, Some(*quantile)),
                                go_float_g(*value)
                            );
                        }
                        let _ = writeln!(text, "{name}_sum{} {}", label_set(labels, None), go_float_g(*sum));
                        let _ = writeln!(text, "{name}_count{} {count}", label_set(labels, None));
                    }
                }
            }
        }
        text
    }
}

/// A Prometheus metric family being written.
struct Family {
    pub(super) kind: Kind,
    help: String,
    samples: Vec<(Vec<(&'static str, String)>, Sampled)>,
}

/// One series' values as Prometheus shows them.
enum Sampled {
    Counter(f64),
    Gauge(f64),
    Summary { quantiles: [f64; 3], sum: f64, count: u64 },
}

/// go-metrics' Prometheus name: ` `, `.`, `=`, `-` and `/` become `_`.
pub(super) fn prometheus_name(dotted: &str) -> String {
    dotted.chars().map(|c| if matches!(c, ' ' | '.' | '=' | '-' | '/') { '_' } else { c }).collect()
}

/// Whether client_golang accepts `name` (`[a-zA-Z_:][a-zA-Z0-9_:]*`); it drops the others.
fn valid_prometheus_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{a="x",b="y"}` (label names sorted by the caller), the quantile last; empty without any.
fn label_set(labels: &[(&'static str, String)], quantile: Option<f64>) -> String {
    if labels.is_empty() && quantile.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    for (index, (label, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let _ = write!(out, "{label}=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if let Some(quantile) = quantile {
        if !labels.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "quantile=\"{}\"", go_float_g(quantile));
    }
    out.push('}');
    out
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float's shortest decimal digits and the position of the decimal point relative to them
/// (Go's `decimalSlice`: value = 0.digits × 10^point), from Rust's shortest scientific form.
fn shortest_digits(scientific: &str) -> (bool, String, i32) {
    let (negative, rest) = match scientific.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, scientific),
    };
    let (mantissa, exponent) = rest.split_once('e').unwrap_or((rest, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (negative, digits, exponent.parse::<i32>().unwrap_or(0) + 1)
}

/// Go's `%e` of shortest digits: `1.2345e+06`, `5e-05`.
fn format_e(negative: bool, digits: &str, point: i32) -> String {
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    let exponent = point - 1;
    let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs());
    out
}

/// Go's `%f` of shortest digits: `1234567`, `0.001`.
fn format_f(negative: bool, digits: &str, point: i32) -> String {
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(digits);
    } else if point as usize >= digits.len() {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
    out
}

/// A float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` writes it (client_golang's values).
pub(super) fn go_float_g(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let (negative, digits, point) = shortest_digits(&format!("{value:e}"));
    let exponent = point - 1;
    if !(-4..GO_G_EXPONENT_MAX).contains(&exponent) {
        format_e(negative, &digits, point)
    } else {
        format_f(negative, &digits, point)
    }
}

/// A float64 as Go's `encoding/json` writes it.
fn json_f64(value: f64) -> String {
    json_float(value.abs(), format!("{value:e}"))
}

/// A float32 as Go's `encoding/json` writes it (its shortest digits are the float32's).
fn json_f32(value: f32) -> String {
    json_float(f64::from(value.abs()), format!("{value:e}"))
}

fn json_float(abs: f64, scientific: String) -> String {
    let (negative, digits, point) = shortest_digits(&scientific);
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // `encoding/json` writes `1e-07` as `1e-7`.
        let e = format_e(negative, &digits, point);
        match e.rsplit_once("e-0") {
            Some((mantissa, last)) if last.len() == 1 => format!("{mantissa}e-{last}"),
            _ => e,
        }
    } else if abs == 0.0 {
        if negative { "-0" } else { "0" }.to_owned()
    } else {
        format_f(negative, &digits, point)
    }
}

/// Go's `Time.String()` of a UTC time (`2024-05-01 10:00:10 +0000 UTC`).
fn go_utc(unix_secs: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_secs);
    let rfc3339 = humantime::format_rfc3339_seconds(time).to_string();
    format!("{} +0000 UTC", rfc3339.trim_end_matches('Z').replace('T', " "))
}

/// A JSON value written as Go's `encoding/json` writes it.
enum Json {
    /// A number, already formatted.
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn object<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Object(fields.into_iter().map(|(key, value)| (key.to_owned(), value)).collect())
    }

    /// Compact, or indented by four spaces per level from `indent` (Go's `MarshalIndent`).
    pub(super) fn render(&self, out: &mut String, indent: Option<usize>) {
        let newline = |out: &mut String, level: usize| {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', level * 4));
        };
        match self {
            Json::Number(number) => out.push_str(number),
            Json::Str(text) => go_json_string(out, text),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Object(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    if let Some(level) = indent {
                        newline(out, level + 1);
                    }
                    item.render(out, indent.map(|level| level + 1));
                }
                if let Some(level) = indent {
                    newline(out, level);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (index, (key, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    if let Some(level) = indent {
                        newline(out, level + 1);
                    }
                    go_json_string(out, key);
                    out.push(':');
                    if indent.is_some() {
                        out.push(' ');
                    }
                    value.render(out, indent.map(|level| level + 1));
                }
                if let Some(level) = indent {
                    newline(out, level);
                }
                out.push('}');
            }
        }
    }
}

/// A string as `encoding/json` escapes it (HTML characters and line separators included).
fn go_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::config::TelemetryConfig;
    use crate::telemetry::tests::{configured, prometheus_config, T0};

    #[test]
    fn the_json_view_shows_the_last_finished_interval_sorted_with_go_numbers() {
        let registry = configured(TelemetryConfig::default(), "");
        registry.record(Kind::Counter, "raft.apply", &[], 1.0, T0 + 1);
        registry.record(Kind::Sample, "raft.commitTime", &[], 2.0, T0 + 2);
        registry.record(Kind::Sample, "raft.commitTime", &[], 4.0, T0 + 3);
        registry.record(Kind::Gauge, "runtime.alloc_bytes", &[], 12_000_000.0, T0 + 4);
        registry.record(Kind::Counter, "api.x", &[("b", "2"), ("a", "1")], 3.0, T0 + 5);
        // Only the running interval: shown.
        let running = registry.json(T0 + 6, false);
        assert!(running.starts_with(r#"{"Timestamp":"2024-05-01 10:00:00 +0000 UTC","Gauges":[{"Name":"consul.runtime.alloc_bytes","Value":12000000,"Labels":{}}],"PrecisionGauges":[],"Points":[],"Counters":[{"Name":"consul.api.x","Count":1,"Rate":0.3,"Sum":3,"Min":3,"Max":3,"Mean":3,"Stddev":0,"Labels":{"a":"1","b":"2"}},{"Name":"consul.raft.apply""#), "{running}");
        assert!(running.contains(r#"{"Name":"consul.raft.commitTime","Count":2,"Rate":0.6,"Sum":6,"Min":2,"Max":4,"Mean":3,"Stddev":1.4142135623730951,"Labels":{}}"#), "{running}");
        // A later interval begun: the finished one is shown.
        registry.record(Kind::Counter, "raft.apply", &[], 1.0, T0 + INTERVAL_NS);
        let finished = registry.json(T0 + INTERVAL_NS + 1, false);
        assert!(finished.contains("10:00:00 +0000 UTC"), "{finished}");
        assert!(finished.contains(r#""Count":2,"Rate":0.6"#), "{finished}");
        let pretty = registry.json(T0 + INTERVAL_NS + 1, true);
        assert!(
            pretty.starts_with(
                "{\n    \"Timestamp\": \"2024-05-01 10:00:00 +0000 UTC\",\n    \"Gauges\": [\n        {\n"
            ),
            "{pretty}"
        );
        assert!(pretty.contains("\"Points\": [],\n") && pretty.ends_with("}\n"), "{pretty}");
        // Two intervals on, the previous one is shown: nothing recorded in it.
        let later = registry.json(T0 + 2 * INTERVAL_NS, false);
        assert!(later.contains(r#""Counters":[{"Name":"consul.raft.apply","Count":1,"Rate":0.1"#), "{later}");
    }

    #[test]
    fn go_formats_floats_as_these_say() {
        assert_eq!(go_float_g(1.0), "1");
        assert_eq!(go_float_g(0.5), "0.5");
        assert_eq!(go_float_g(123_456.0), "123456");
        assert_eq!(go_float_g(1_234_567.0), "1.234567e+06");
        assert_eq!(go_float_g(12_000_000.0), "1.2e+07");
        assert_eq!(go_float_g(0.0001), "0.0001");
        assert_eq!(go_float_g(0.00001), "1e-05");
        assert_eq!(go_float_g(-2.5), "-2.5");
        assert_eq!(go_float_g(f64::NAN), "NaN");
        assert_eq!(go_float_g(f64::INFINITY), "+Inf");
        assert_eq!(json_f64(3.0), "3");
        assert_eq!(json_f64(0.3), "0.3");
        assert_eq!(json_f64(1e21), "1e+21");
        assert_eq!(json_f64(1e20), "100000000000000000000");
        assert_eq!(json_f64(1e-7), "1e-7");
        assert_eq!(json_f64(0.0), "0");
        assert_eq!(json_f32(0.1), "0.1");
        assert_eq!(json_f32(1.2e7), "12000000");
        let mut escaped = String::new();
        go_json_string(&mut escaped, "a<b>&\"\n\u{2028}");
        assert_eq!(escaped, r#""a\u003cb\u003e\u0026\"\n\u2028""#);
        assert_eq!(go_utc(1_714_557_610), "2024-05-01 10:00:10 +0000 UTC");
    }

    #[test]
    fn prometheus_has_types_help_summaries_and_declared_metrics() {
        let registry = configured(TelemetryConfig { disable_hostname: true, ..prometheus_config() }, "host1");
        for value in [2.0, 3.0, 4.0] {
            registry.record(Kind::Sample, "raft.commitTime", &[], value, T0);
        }
        registry.record(Kind::Sample, "api.http", &[("method", "GET"), ("path", "v1_kv_")], 1.5, T0);
        registry.record(Kind::Counter, "serf.member.join", &[("network", "lan")], 1.0, T0);
        let text = registry.prometheus(T0 + 1);
        assert!(text.contains("# TYPE consul_raft_commitTime summary\n"), "{text}");
        assert!(text.contains(
            "consul_raft_commitTime{quantile=\"0.5\"} 3\nconsul_raft_commitTime{quantile=\"0.9\"} 4\nconsul_raft_commitTime{quantile=\"0.99\"} 4\nconsul_raft_commitTime_sum 9\nconsul_raft_commitTime_count 3\n"
        ), "{text}");
        // Declared, labeled series beside the declared unlabeled one.
        assert!(text.contains("consul_api_http{quantile=\"0.5\"} NaN\n"), "{text}");
        assert!(
            text.contains("consul_api_http{method=\"GET\",path=\"v1_kv_\",quantile=\"0.99\"} 1.5\n"),
            "{text}"
        );
        assert!(text.contains("# HELP consul_raft_apply Entries proposed to Raft.\n# TYPE consul_raft_apply counter\nconsul_raft_apply 0\n"), "{text}");
        // Undeclared: its name is its help.
        assert!(text.contains("# HELP consul_serf_member_join consul_serf_member_join\n# TYPE consul_serf_member_join counter\nconsul_serf_member_join{network=\"lan\"} 1\n"), "{text}");
        // Quantiles slide out of the window; sum and count stay; undeclared series expire.
        let later = registry.prometheus(T0 + 11 * 1_000_000_000);
        assert!(later.contains("consul_raft_commitTime{quantile=\"0.5\"} NaN\n"), "{later}");
        assert!(later.contains("consul_raft_commitTime_count 3\n"), "{later}");
        let expired = registry.prometheus(T0 + 61 * 1_000_000_000);
        assert!(!expired.contains("consul_serf_member_join{"), "{expired}");
        assert!(expired.contains("consul_raft_commitTime_count 3\n"), "declared: never expired");
    }

    #[test]
    fn a_declared_gauge_with_the_host_name_shows_both_names() {
        let registry = configured(prometheus_config(), "host1");
        registry.record(Kind::Gauge, "autopilot.healthy", &[], 1.0, T0);
        let text = registry.prometheus(T0);
        assert!(text.contains("consul_autopilot_healthy 0\n"), "{text}");
        assert!(
            text.contains("# TYPE consul_host1_autopilot_healthy gauge\nconsul_host1_autopilot_healthy 1\n"),
            "{text}"
        );
    }
}
