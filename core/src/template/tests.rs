//! Tests: the table generated from Go's `text/template` (testdata/go_cases.jsonl, made by
//! testdata/gen/main.go), then consul-template's functions and the dependency parsers.

use super::json::from_json;
use super::*;

/// A source that knows nothing: every query is pending.
struct Nothing;

impl Source for Nothing {
    fn query(&mut self, _: &Dependency) -> Answer {
        Answer::Pending
    }
}

/// Cases where muster knowingly differs from Go 1.19, with the reason.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    ("range over int", "Go 1.22 ranges over ints; Go 1.19 (the generator) refuses"),
    ("else with", "Go 1.23's {{else with}}; Go 1.19 (the generator) refuses"),
    ("const complex", "complex constants are refused at parse time"),
    ("const imaginary", "complex constants are refused at parse time"),
    ("printf complex", "complex constants are refused at parse time"),
    ("printf lots", "complex constants are refused at parse time"),
    ("out of range", "Go checks slice bounds against the capacity encoding/json happened to allocate"),
    ("nested template depth", "the depth limit is 100, not Go's 100000"),
    ("exec printf %x of float", "hexadecimal float verbs (%x, %X, %b of floats) are not implemented"),
    ("len of missing", "Go panics inside reflect; muster says `len of nil pointer`"),
];

fn run_case(tmpl: &str, data: &Value, delims: (&str, &str)) -> Result<String, String> {
    let template = Template::parse("t", tmpl, delims).map_err(|e| e.to_string())?;
    let rendered =
        template.render(data, &mut Nothing, &RenderOptions::default()).map_err(|e| e.to_string())?;
    Ok(rendered.output)
}

/// The generated table: its first line holds the data every case shares, each following line
/// one case (with `data` of its own when it has some).
fn go_cases() -> (serde_json::Value, Vec<serde_json::Value>) {
    let table = include_str!("testdata/go_cases.jsonl");
    let mut lines = table.lines().map(|line| serde_json::from_str(line).expect("the table is valid JSON"));
    let first: serde_json::Value = lines.next().expect("the shared data");
    let shared =
        serde_json::from_str(first["shared_data"].as_str().expect("shared_data")).expect("data JSON");
    (shared, lines.collect())
}

#[test]
fn go_text_template_table() {
    let (shared, cases) = go_cases();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().expect("name");
        if KNOWN_DIFFERENCES.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let tmpl = case["tmpl"].as_str().expect("tmpl");
        let data = match case["data"].as_str() {
            Some(own) => from_json(&serde_json::from_str(own).expect("data JSON")),
            None => from_json(&shared),
        };
        let delims = (case["left"].as_str().unwrap_or(""), case["right"].as_str().unwrap_or(""));
        let got = run_case(tmpl, &data, delims);
        let want = match (case.get("out"), case.get("err")) {
            (Some(out), _) => Ok(out.as_str().expect("out").to_string()),
            (_, Some(err)) => Err(err.as_str().expect("err").to_string()),
            _ => panic!("case {name} has neither out nor err"),
        };
        checked += 1;
        if got != want {
            failures.push(format!("{name}: {tmpl:?}\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(checked > 400, "the table holds {checked} cases");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ from Go:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn known_differences_still_differ_or_are_documented() {
    // Each known difference names a real case of the table.
    let table = include_str!("testdata/go_cases.jsonl");
    for (name, _) in KNOWN_DIFFERENCES {
        assert!(table.contains(&format!("\"name\":\"{name}\"")), "{name} is not in the table");
    }
}

/// A source with fixed answers; anything else is pending.
#[derive(Default)]
struct Fixed {
    answers: Vec<(Dependency, Answer)>,
    env: BTreeMap<String, String>,
    writes: Vec<FileWrite>,
}

impl Source for Fixed {
    fn query(&mut self, dependency: &Dependency) -> Answer {
        self.answers.iter().find(|(d, _)| d == dependency).map_or(Answer::Pending, |(_, a)| a.clone())
    }

    fn env(&mut self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn write_file(&mut self, write: &FileWrite) -> Result<(), String> {
        self.writes.push(write.clone());
        Ok(())
    }
}

/// 2026-12-07T17:27:06.123456789Z.
const NOW_UNIX_NANOS: i64 = 1_796_664_426_123_456_789;

fn render_with(tmpl: &str, data: &Value, source: &mut dyn Source) -> Result<Rendered, String> {
    let template = Template::parse("t", tmpl, ("", "")).map_err(|e| e.to_string())?;
    let options = RenderOptions { now_unix_nanos: NOW_UNIX_NANOS, ..RenderOptions::default() };
    template.render(data, source, &options).map_err(|e| e.to_string())
}

fn sample_data() -> Value {
    let json = r#"{"Tags": ["a", "b"], "M": {"x": "<b>&", "n": 1, "l": [1.5, "s", null]},
        "Flat": {"a/b/c": "1", "a/d": "2", "e": "3"}, "Text": "  hi  "}"#;
    from_json(&serde_json::from_str(json).expect("sample JSON"))
}

fn render_ok(tmpl: &str) -> String {
    match render_with(tmpl, &sample_data(), &mut Fixed::default()) {
        Ok(rendered) => rendered.output,
        Err(e) => panic!("{tmpl}: {e}"),
    }
}

fn render_err(tmpl: &str) -> String {
    match render_with(tmpl, &sample_data(), &mut Fixed::default()) {
        Ok(rendered) => panic!("{tmpl}: rendered {:?}", rendered.output),
        Err(e) => e,
    }
}

fn service(node: &str, id: &str, tags: &[&str], meta: &[(&str, &str)]) -> Value {
    let tags = Value::list(tags.iter().map(|t| Value::from(*t)).collect());
    let meta = Value::map(meta.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect());
    Value::record(
        "*dependency.HealthService",
        vec![
            ("Node", Value::from(node)),
            ("Address", Value::from("10.0.0.1")),
            ("ID", Value::from(id)),
            ("Name", Value::from("web")),
            ("Tags", tags),
            ("ServiceMeta", meta),
            ("Port", Value::Int(80)),
        ],
    )
}

fn key_pair(key: &str, value: &str) -> Value {
    Value::record(
        "*dependency.KeyPair",
        vec![
            ("Path", Value::from(format!("p/{key}"))),
            ("Key", Value::from(key)),
            ("Value", Value::from(value)),
        ],
    )
}

#[test]
fn helpers_take_the_piped_value_last() {
    let cases: &[(&str, &str)] = &[
        (r#"{{ .Tags | contains "a" }} {{ .Tags | contains "z" }}"#, "true false"),
        (r#"{{ in .Tags "b" }} {{ in "foobar" "oba" }} {{ in .Tags 1 }}"#, "true true false"),
        (r#"{{ .Tags | containsAll (split "," "a,b") }} {{ .Tags | containsAll (split "," "a,c") }}"#, "true false"),
        (r#"{{ .Tags | containsAny (split "," "c,b") }} {{ .Tags | containsAny (split "," "c,d") }}"#, "true false"),
        (r#"{{ .Tags | containsNone (split "," "c,d") }} {{ .Tags | containsNone (split "," "a") }}"#, "true false"),
        (r#"{{ .Tags | containsNotAll (split "," "a,c") }} {{ .Tags | containsNotAll .Tags }}"#, "true false"),
        (r#"{{ "a,b,c" | split "," | join ";" }}"#, "a;b;c"),
        (r#"{{ "a,b" | split "," }} {{ split "," "   " }} {{ len (split "," " x ") }}"#, "[a b] [] 1"),
        (r#"{{ "foo.bar.baz" | replaceAll "." "_" }}"#, "foo_bar_baz"),
        (r#"{{ "foo123" | regexMatch "^foo[0-9]+$" }} {{ "bar" | regexMatch "^foo" }}"#, "true false"),
        (r#"{{ "foo123" | regexReplaceAll "([a-z]+)([0-9]+)" "$2-$1" }}"#, "123-foo"),
        (r#"{{ "HeLLo" | toLower }} {{ "HeLLo" | toUpper }} {{ "hello wORLD-x_y" | toTitle }}"#, "hello HELLO Hello WORLD-X_y"),
        (r#"[{{ .Text | trimSpace }}] [{{ "xxhixx" | trim "x" }}]"#, "[hi] [hi]"),
        (r#"{{ "prefix-body" | trimPrefix "prefix-" }} {{ "body.txt" | trimSuffix ".txt" }} {{ "x" | trimPrefix "y" }}"#, "body body x"),
        (r#"{{ .M | toJSON }}"#, r#"{"l":[1.5,"s",null],"n":1,"x":"\u003cb\u003e\u0026"}"#),
        (r#"{{ .M | toUnescapedJSON }}"#, r#"{"l":[1.5,"s",null],"n":1,"x":"<b>&"}"#),
        (r#"{{ .Tags | toJSONPretty }}"#, "[\n  \"a\",\n  \"b\"\n]"),
        (r#"{{ .M | toJSONPretty }}"#, "{\n  \"l\": [\n    1.5,\n    \"s\",\n    null\n  ],\n  \"n\": 1,\n  \"x\": \"\\u003cb\\u003e\\u0026\"\n}"),
        (r#"{{ toJSON 1e21 }} {{ toJSON 1e-7 }} {{ toJSON 0.000001 }} {{ toJSON 100 }}"#, "1e+21 1e-7 0.000001 100"),
        (r#"{{ (parseJSON "{\"a\":[1,2],\"b\":{\"c\":true}}").a }} {{ parseJSON "" }}"#, "[1 2] map[]"),
        (r#"{{ "42" | parseInt | add 1 }} {{ "1.5" | parseFloat }} {{ "true" | parseBool }} {{ "7" | parseUint }}"#, "43 1.5 true 7"),
        (r#"{{ "" | parseInt }} {{ "" | parseBool }}"#, "0 false"),
        (r#"{{ "hello" | base64Encode }} {{ "aGVsbG8=" | base64Decode }}"#, "aGVsbG8= hello"),
        (r#"{{ "a?b>" | base64URLEncode }} {{ "YT9iPg==" | base64URLDecode }} {{ "YT9iPg==" | base64Decode }}"#, "YT9iPg== a?b> a?b>"),
        (r#"{{ "hello" | sha256Hex }}"#, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
        (r#"{{ "a\nb\n\nc" | indent 2 }}"#, "  a\n  b\n\n  c"),
        (r#"{{ 5 | add 2 }} {{ 5 | subtract 2 }} {{ 5 | multiply 3 }} {{ 10 | divide 2 }} {{ 10 | modulo 3 }}"#, "7 3 15 5 1"),
        (r#"{{ 1.5 | add 1 }} {{ 7 | divide 2 }} {{ 7.0 | divide 2 }} {{ 3 | minimum 5 }} {{ 3 | maximum 5.5 }}"#, "2.5 3 3.5 3 5.5"),
        (r#"{{ range loop 3 }}{{.}}{{end}} {{ range loop 2 4 }}{{.}}{{end}} {{ range loop "1" "3" }}{{.}}{{end}}"#, "012 23 12"),
        (r#"{{ range $i, $e := loop 5 8 }}{{$i}}:{{$e}} {{end}}"#, "0:5 1:6 2:7 "),
        (r#"{{ timestamp }}|{{ timestamp "unix" }}|{{ timestamp "2006-01-02 15:04:05.000 Mon Jan _2 3PM" }}"#, "2026-12-07T17:27:06Z|1796664426|2026-12-07 17:27:06.123 Mon Dec  7 5PM"),
        (r#"{{ .Flat | explodeMap }}"#, "map[a:map[b:map[c:1] d:2] e:3]"),
        (r#"{{ define "x" }}[{{ . }}]{{ end }}{{ executeTemplate "x" 5 }}{{ executeTemplate "x" }}"#, "[5][<no value>]"),
        (r#"{{ define "x" }}{{ . }}{{ end }}{{ executeTemplate "x" 5 | len }}"#, "1"),
        (r#"{{ "a=1, b=2,c,=3" | splitToMap "," "=" }} {{ splitToMap "," "=" "  " }}"#, "map[:3  b:2 a:1] map[]"),
        (r#"{{ mergeMap .M (parseJSON "{\"n\": 2, \"new\": true}") }}"#, "map[l:[1.5 s <nil>] n:1 new:true x:<b>&]"),
        (r#"{{ mergeMapWithOverride .M (parseJSON "{\"n\": 2}") }}"#, "map[l:[1.5 s <nil>] n:2 x:<b>&]"),
        (r#"{{ 5 | maximum 2.5 }} {{ printf "%T" (5 | maximum 2.5) }} {{ printf "%T" (1 | minimum 2.5) }}"#, "5 int int"),
        (r#"{{ key "" }}[{{ keyOrDefault "" "d" }}]{{ keyExists "" }}{{ ls "" }}{{ file "" }}"#, "[d]false[]"),
    ];
    for (tmpl, want) in cases {
        assert_eq!(render_ok(tmpl), *want, "{tmpl}");
    }
}

#[test]
fn helper_errors_name_the_function() {
    let cases: &[(&str, &str)] = &[
        (r#"{{ 1 | divide 0 }}"#, "error calling divide: runtime error: integer divide by zero"),
        (
            r#"{{ "x" | parseInt }}"#,
            r#"error calling parseInt: parseInt: strconv.ParseInt: parsing "x": invalid syntax"#,
        ),
        (
            r#"{{ "!!" | base64Decode }}"#,
            "error calling base64Decode: base64Decode: illegal base64 data at input byte 0",
        ),
        (r#"{{ "x" | regexMatch "(" }}"#, "error calling regexMatch: error parsing regexp"),
        (r#"{{ "x" | add 1 }}"#, r#"error calling add: add: unknown type for "x" (string)"#),
        (r#"{{ "a" | indent -1 }}"#, "error calling indent: indent value must be a positive integer"),
        (r#"{{ split 1 "a" }}"#, "expected string; found 1"),
        (r#"{{ .Tags | split "," }}"#, "wrong type for value; expected string; got []interface {}"),
        (r#"{{ .M.l | join "," }}"#, "wrong type for value; expected []string; got []interface {}"),
        (
            r#"{{ executeTemplate "nope" }}"#,
            r#"error calling executeTemplate: template: no template "nope" associated with template "t""#,
        ),
        (
            r#"{{ loop 1 2 3 }}"#,
            "error calling loop: loop: wrong number of arguments, expected 1 or 2, but got 3",
        ),
        (r#"{{ loop 2000000 }}"#, "over the limit of 1000000"),
        (r#"{{ loop 1.5 }}"#, "error calling loop: loop: bad argument type: float64"),
        (
            r#"{{ loop "x" }}"#,
            r#"error calling loop: parseInt: strconv.ParseInt: parsing "x": invalid syntax"#,
        ),
        (r#"{{ timestamp "a" "b" }}"#, "timestamp: wrong number of arguments, expected 0 or 1, but got 2"),
        (r#"{{ mergeMap .M "x" }}"#, "expected map[string]interface {}; got string"),
        (r#"{{ toJSON (parseFloat "NaN") }}"#, "error calling toJSON: toJSON: json: unsupported value: NaN"),
        (r#"{{ explodeMap "x" }}"#, "error calling explodeMap: explodeMap: wrong type for value"),
        (r#"{{ mustEnv "NOPE" }}"#, "error calling mustEnv: required environment variable NOPE is empty"),
    ];
    for (tmpl, want) in cases {
        let err = render_err(tmpl);
        assert!(err.contains(want), "{tmpl}: {err}");
    }
}

#[test]
fn scratch_is_per_render() {
    let tmpl = r#"{{ scratch.Set "a" 1 }}{{ scratch.SetX "a" 2 }}{{ scratch.SetX "b" 3 }}{{ scratch.Get "a" }}{{ scratch.Get "b" }} {{ scratch.Key "a" }}{{ scratch.Key "z" }} {{ scratch.MapSet "m" "k2" "v2" }}{{ scratch.MapSet "m" "k1" "v1" }}{{ scratch.MapSetX "m" "k1" "no" }}{{ scratch.MapValues "m" }} {{ scratch.Get "none" }}"#;
    assert_eq!(render_ok(tmpl), "13 truefalse [v1 v2] <no value>");
    // A second render starts from an empty scratch.
    assert_eq!(render_ok(r#"{{ scratch.Key "a" }}"#), "false");
    assert!(render_err(r#"{{ scratch.Set "a" 1 }}{{ scratch.MapSet "a" "k" "v" }}"#).contains("not a map"));
    assert!(render_err(r#"{{ scratch.Nope "a" }}"#).contains("can't evaluate field Nope"));
}

#[test]
fn grouping_helpers_build_maps() {
    let services = Value::list(vec![
        service("n1", "web-1", &["blue", "prod"], &[("version", "2"), ("zone", "us-east")]),
        service("n2", "web-2", &["prod"], &[("version", "10")]),
    ]);
    let data = Value::map(BTreeMap::from([("S".to_string(), services)]));
    let run = |tmpl: &str| render_with(tmpl, &data, &mut Fixed::default()).map(|r| r.output);
    assert_eq!(
        run("{{ range $tag, $s := .S | byTag }}{{ $tag }}:{{ range $s }}{{ .ID }},{{ end }} {{ end }}")
            .as_deref(),
        Ok("blue:web-1, prod:web-1,web-2, ")
    );
    assert_eq!(
        run(r#"{{ range $k, $s := .S | byMeta "zone,version|int" }}{{ $k }}={{ len $s }} {{ end }}"#)
            .as_deref(),
        Ok("_no_zone__00010=1 us-east_00002=1 ")
    );
    let pairs = Value::list(vec![key_pair("a/b", "1"), key_pair("a/c/d", "2"), key_pair("e", "3")]);
    let data = Value::map(BTreeMap::from([("P".to_string(), pairs)]));
    let run = |tmpl: &str| render_with(tmpl, &data, &mut Fixed::default()).map(|r| r.output);
    assert_eq!(
        run("{{ range $top, $m := .P | byKey }}{{ $top }}[{{ range $k, $p := $m }}{{ $k }}={{ $p.Value }};{{ end }}]{{ end }}").as_deref(),
        Ok("a[b=1;c/d=2;]")
    );
    assert_eq!(run("{{ .P | explode }}").as_deref(), Ok("map[a:map[b:1 c:map[d:2]] e:3]"));
}

#[test]
fn query_functions_record_used_and_missing() {
    let web = Dependency::parse_service("web", false).expect("web parses");
    let mut source = Fixed::default();
    let out = render_with(
        r#"{{ range service "web" }}{{ .Address }}{{ end }}|{{ key "a/b" }}|{{ keyOrDefault "c" "dflt" }}"#,
        &Value::Nil,
        &mut source,
    )
    .expect("renders");
    assert_eq!(out.output, "||dflt");
    let key_a = Dependency::Key { path: "a/b".into(), dc: None };
    let key_c = Dependency::Key { path: "c".into(), dc: None };
    assert_eq!(out.used, vec![web.clone(), key_a.clone(), key_c.clone()]);
    assert_eq!(out.missing, vec![web.clone(), key_a.clone(), key_c.clone()]);

    // With answers: a present key renders; an absent one holds `key` but not `keyOrDefault`.
    source.answers = vec![
        (web.clone(), Answer::Ready(Value::list(vec![service("n1", "web-1", &[], &[])]))),
        (key_a.clone(), Answer::Ready(Value::Nil)),
        (key_c.clone(), Answer::Ready(Value::Nil)),
    ];
    let out = render_with(r#"{{ range service "web" }}{{ .Address }}:{{ .Port }}{{ end }}|{{ key "a/b" }}|{{ keyOrDefault "c" "dflt" }}"#, &Value::Nil, &mut source)
        .expect("renders");
    assert_eq!(out.output, "10.0.0.1:80||dflt");
    assert_eq!(out.missing, vec![key_a.clone()]);

    source.answers[1].1 = Answer::Ready(Value::from("v"));
    let out = render_with(
        r#"{{ key "a/b" }} {{ key "/a/b" }} {{ keyExists "a/b" }} {{ keyExists "c" }}"#,
        &Value::Nil,
        &mut source,
    )
    .expect("renders");
    assert_eq!((out.output.as_str(), out.missing.len(), out.used.len()), ("v v true false", 0, 2));
}

#[test]
fn listing_functions_filter_and_safe_variants_hold() {
    let prefix = Dependency::KeyPrefix { prefix: "app".into(), dc: None };
    let pairs =
        Value::list(vec![key_pair("x", "1"), key_pair("dir/", ""), key_pair("dir/y", "2"), key_pair("", "")]);
    let mut source = Fixed { answers: vec![(prefix.clone(), Answer::Ready(pairs))], ..Fixed::default() };
    let out = render_with(
        r#"{{ range ls "app" }}{{ .Key }}={{ .Value }};{{ end }}|{{ range tree "app" }}{{ .Key }};{{ end }}|{{ range safeLs "app" }}{{ .Key }};{{ end }}"#,
        &Value::Nil,
        &mut source,
    )
    .expect("renders");
    assert_eq!(out.output, "x=1;|x;dir/y;|x;");
    assert!(out.missing.is_empty());

    source.answers[0].1 = Answer::Ready(Value::list(vec![]));
    let out =
        render_with(r#"{{ ls "app" }}{{ safeTree "app" }}"#, &Value::Nil, &mut source).expect("renders");
    assert_eq!(out.output, "[][]");
    assert_eq!(out.missing, vec![prefix]);
}

#[test]
fn catalog_functions_and_io_go_through_the_source() {
    let dcs = Dependency::Datacenters { ignore_failing: false };
    let file = Dependency::File { path: "/etc/x".into() };
    let node = Dependency::parse_node("n1@dc2").expect("node parses");
    let mut source = Fixed {
        answers: vec![
            (dcs.clone(), Answer::Ready(Value::list(vec!["dc1".into(), "dc2".into()]))),
            (file.clone(), Answer::Ready("contents".into())),
        ],
        env: BTreeMap::from([
            ("HOME".to_string(), "/root".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]),
        ..Fixed::default()
    };
    let out = render_with(
        r#"{{ datacenters }} {{ file "/etc/x" }} {{ env "HOME" }}[{{ env "NOPE" }}] {{ envOrDefault "NOPE" "d" }}{{ envOrDefault "EMPTY" "d" }} {{ with node "n1@dc2" }}{{ . }}{{ else }}none{{ end }}{{ writeToFile "/tmp/f" "" "" "0644" "append,newline" "body" }}{{ services }}{{ nodes "@dc1~n1" }}"#,
        &Value::Nil,
        &mut source,
    )
    .expect("renders");
    assert_eq!(out.output, "[dc1 dc2] contents /root[] d none[][]");
    assert!(out.missing.contains(&node));
    assert_eq!(out.used.len(), 5);
    assert_eq!(
        source.writes,
        vec![FileWrite {
            path: "/tmp/f".into(),
            user: String::new(),
            group: String::new(),
            perms: "0644".into(),
            append: true,
            newline: true,
            content: "body".into()
        }]
    );
}

#[test]
fn dependency_strings_parse_as_consul_template_does() {
    let dep = Dependency::parse_service("release.web?ns=team@east-1~agent1|warning, passing", false);
    assert!(dep.is_err(), "a space is not in the filter grammar: {dep:?}");
    let dep = Dependency::parse_service("release.v1.web?ns=team&peer=p@east-1~agent1|warning,passing", false)
        .expect("parses");
    assert_eq!(
        dep,
        Dependency::Service {
            name: "web".into(),
            tag: Some("release.v1".into()),
            dc: Some("east-1".into()),
            near: Some("agent1".into()),
            status_filter: vec![HealthFilter::Passing, HealthFilter::Warning],
            query: BTreeMap::from([("ns".into(), "team".into()), ("peer".into(), "p".into())]),
            connect: false,
        }
    );
    assert_eq!(dep.to_string(), "health.service(release.v1.web@east-1~agent1|passing,warning)");
    assert_eq!(
        Dependency::parse_service("web|bogus", false).map_err(|e| e.to_string()),
        Err(r#"health.service: invalid filter: "bogus" in "web|bogus""#.into())
    );
    assert_eq!(
        Dependency::parse_service("we b", false).map_err(|e| e.to_string()),
        Err(r#"health.service: invalid format: "we b""#.into())
    );
    assert_eq!(
        Dependency::parse_service("web?bogus=1", false).map_err(|e| e.to_string()),
        Err(r#"health.service: invalid query parameter: "bogus""#.into())
    );
    assert_eq!(
        Dependency::parse_key("/a/b@dc1"),
        Ok(Dependency::Key { path: "a/b".into(), dc: Some("dc1".into()) })
    );
    assert_eq!(
        Dependency::parse_key("").map_err(|e| e.to_string()),
        Err(r#"kv.get: invalid format: """#.into())
    );
    assert_eq!(
        Dependency::parse_key_prefix(""),
        Ok(Dependency::KeyPrefix { prefix: String::new(), dc: None })
    );
    assert_eq!(
        Dependency::parse_node(""),
        Ok(Dependency::Node { name: None, dc: None, query: BTreeMap::new() })
    );
    assert_eq!(
        Dependency::parse_nodes("@dc1~n1"),
        Ok(Dependency::Nodes { dc: Some("dc1".into()), near: Some("n1".into()), query: BTreeMap::new() })
    );
    assert!(Dependency::parse_services("nope").is_err());
    // Separate arguments are joined with `|`, as consul-template does.
    let out = render_with(r#"{{ service "web" "any" }}"#, &Value::Nil, &mut Nothing).expect("renders");
    assert!(
        matches!(&out.used[0], Dependency::Service { status_filter, .. } if *status_filter == vec![HealthFilter::Any])
    );
    let err = render_with(r#"{{ service "web|nope" }}"#, &Value::Nil, &mut Nothing).expect_err("refused");
    assert!(
        err.ends_with(r#"error calling service: health.service: invalid filter: "nope" in "web|nope""#),
        "{err}"
    );
}

#[test]
fn custom_delimiters() {
    let t = Template::parse("t", "[[ .A ]] {{ .A }} [[- /* c */ -]] [[ if .A ]]yes[[ end ]]", ("[[", "]]"))
        .expect("parses");
    let data = Value::map(BTreeMap::from([("A".to_string(), Value::from("x"))]));
    let out = t.render(&data, &mut Nothing, &RenderOptions::default()).expect("renders");
    assert_eq!(out.output, "x {{ .A }}yes");
    let err = Template::parse("t", "[[ .A ", ("[[", "]]")).expect_err("unclosed");
    assert_eq!(err.to_string(), "template: t:1: unclosed action");
}

#[test]
fn options_missing_key_and_denylist() {
    let t = Template::parse("t", "{{ .Nope }}", ("", "")).expect("parses");
    let options = RenderOptions { error_on_missing_key: true, ..RenderOptions::default() };
    let err = t.render(&sample_data(), &mut Nothing, &options).expect_err("missing key");
    assert_eq!(
        err.to_string(),
        r#"template: t:1:3: executing "t" at <.Nope>: map has no entry for key "Nope""#
    );
    let t = Template::parse("t", r#"{{ "x" | toUpper }}{{ env "HOME" }}"#, ("", "")).expect("parses");
    let options = RenderOptions { function_denylist: vec!["env*".into()], ..RenderOptions::default() };
    let err = t.render(&Value::Nil, &mut Nothing, &options).expect_err("denied");
    assert!(err.to_string().ends_with("error calling env: function is disabled"), "{err}");
}

#[test]
fn hostile_templates_end_in_errors() {
    let deep =
        format!("{}x{}", "{{if 1}}".repeat(PARSE_DEPTH_MAX + 5), "{{end}}".repeat(PARSE_DEPTH_MAX + 5));
    assert!(Template::parse("t", &deep, ("", "")).expect_err("too deep").message.contains("nesting depth"));
    let parens = format!("{{{{{}1{}}}}}", "(".repeat(PARSE_DEPTH_MAX + 5), ")".repeat(PARSE_DEPTH_MAX + 5));
    assert!(Template::parse("t", &parens, ("", "")).is_err());
    let recursive = r#"{{define "r"}}{{template "r" .}}{{end}}{{template "r" .}}"#;
    assert!(render_err(recursive).contains("exceeded maximum template depth (100)"));
    let recursive = r#"{{define "r"}}{{executeTemplate "r" .}}{{end}}{{template "r" .}}"#;
    assert!(render_err(recursive).contains("exceeded maximum template depth (100)"));
    let busy = "{{range loop 1000000}}{{range loop 1000000}}{{end}}{{end}}";
    assert!(render_err(busy).contains("exceeded maximum evaluation steps"));
    let big = r#"{{range loop 1000000}}{{range loop 1000}}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{{end}}{{end}}"#;
    assert!(
        render_err(big).contains("exceeded maximum evaluation steps")
            || render_err(big).contains("output exceeds")
    );
    // Go pads to any width; muster refuses widths over PAD_MAX as Go refuses `*` widths.
    assert_eq!(render_ok(r#"{{printf "%1000001d" 1}}"#), "%!(BADWIDTH)d%!(EXTRA int=1)");
}

#[test]
fn records_print_and_index_like_go_structs() {
    let data = Value::map(BTreeMap::from([("S".to_string(), service("n1", "web-1", &["a"], &[]))]));
    // Read out of a map, the record is an `interface {}` to Go; from a variable, its own type.
    let out =
        render_with("{{ .S.Node }} {{ .S.Tags }} {{ .S.Nope }}", &data, &mut Nothing).expect_err("no field");
    assert!(out.ends_with("can't evaluate field Nope in type interface {}"), "{out}");
    let out = render_with("{{ $s := .S }}{{ $s.Nope }}", &data, &mut Nothing).expect_err("no field");
    assert!(out.ends_with("can't evaluate field Nope in type *dependency.HealthService"), "{out}");
    let out =
        render_with("{{ .S.Node }} {{ .S }} {{ if .S }}t{{ end }}", &data, &mut Nothing).expect("renders");
    assert_eq!(out.output, "n1 &{n1 10.0.0.1 web-1 web [a] map[] 80} t");
}

#[test]
fn go_1_23_else_with_and_go_1_22_range_over_int() {
    let tmpl = "{{with .Missing}}a{{else with .Tags}}{{index . 0}}{{else}}none{{end}}|{{range $i, $e := 3}}{{$i}}{{$e}}{{end}}";
    assert_eq!(render_ok(tmpl), "a|001122");
    assert_eq!(render_ok("{{with .Missing}}a{{else with .Nope}}b{{else}}none{{end}}"), "none");
    let err = render_with("{{if 1}}{{else with 2}}{{end}}", &Value::Nil, &mut Nothing)
        .expect_err("else with after if");
    assert_eq!(err, "template: t:1: unexpected <with> in input");
}

#[test]
fn break_in_a_definition_inside_a_range_is_refused() {
    // Reference: Go's parser gives each `define` and `block` a tree of its own.
    // A `define` may only stand at the top level; a `block` may stand anywhere.
    let err = Template::parse("t", "{{range .}}{{define \"x\"}}{{break}}{{end}}{{end}}", ("", ""))
        .expect_err("nested define");
    assert_eq!(err.message, "unexpected <define> in command");
    let err = Template::parse("t", "{{range .}}{{block \"x\" .}}{{continue}}{{end}}{{end}}", ("", ""))
        .expect_err("continue");
    assert_eq!(err.message, "{{continue}} outside {{range}}");
}

/// Seeded token soup: parsing and rendering random sequences of template tokens never panics
/// (the fuzz target `template` does the same with arbitrary bytes).
#[test]
fn random_token_soup_never_panics() {
    use rand::{Rng, SeedableRng};
    const TOKENS: &[&str] = &[
        "range $, $ =",
        "range $i, $e :=",
        "range $x =",
        "$ =",
        "{{range $, $ = .L}}",
        "{{else if",
        "{{else with",
        "{{break}}",
        "{{continue}}",
        "{{",
        "}}",
        "{{- ",
        " -}}",
        "(",
        ")",
        "|",
        " ",
        "\n",
        ".",
        ".S",
        ".L",
        ".M.x",
        "$",
        "$x",
        "$x :=",
        "$x =",
        ",",
        "if",
        "else",
        "end",
        "range",
        "with",
        "define",
        "template",
        "block",
        "break",
        "continue",
        "\"t\"",
        "`raw`",
        "'c'",
        "1",
        "-2.5",
        "0x1F",
        "1e3",
        "nil",
        "true",
        "index",
        "slice",
        "len",
        "printf",
        "\"%v %d\"",
        "eq",
        "lt",
        "and",
        "or",
        "not",
        "print",
        "html",
        "js",
        "urlquery",
        "call",
        "split",
        "join",
        "toJSON",
        "parseJSON",
        "loop",
        "add",
        "divide",
        "0",
        "scratch.Set",
        "scratch.Get",
        "executeTemplate",
        "key",
        "service",
        "ls",
        "safeLs",
        "explode",
        "byTag",
        "indent",
        "timestamp",
        "/*",
        "*/",
        "text",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let data = sample_data();
    let mut parsed = 0;
    for round in 0..20_000 {
        let mut text = String::new();
        for _ in 0..rng.gen_range(1..12) {
            // Mostly well-delimited actions of a few tokens, sometimes raw soup.
            let words: Vec<&str> =
                (0..rng.gen_range(1..5)).map(|_| TOKENS[rng.gen_range(0..TOKENS.len())]).collect();
            if round % 4 == 0 {
                text.push_str(&words.join(" "));
            } else {
                text.push_str(&format!("{{{{{}}}}}x", words.join(" ")));
            }
        }
        if let Ok(template) = Template::parse("t", &text, ("", "")) {
            parsed += 1;
            let _ = template.render(&data, &mut Fixed::default(), &RenderOptions::default());
        }
    }
    assert!(parsed > 1_000, "only {parsed} random templates parsed");
}

#[test]
fn expensive_calls_are_charged_and_bounded() {
    // Each call is cheap to write and costly to run: the step budget counts what calls produce.
    let big_lists = "{{range loop 1000000}}{{len (loop 1000000)}}{{end}}";
    assert!(render_err(big_lists).contains("exceeded maximum evaluation steps"));
    let big_strings = r#"{{range loop 1000000}}{{len (printf "%1000000d" 1)}}{{end}}"#;
    assert!(render_err(big_strings).contains("exceeded maximum evaluation steps"));
    let growth = r#"{{$s := printf "%1000000d" 1}}{{range loop 100}}{{$s = printf "%s%s" $s $s}}{{end}}"#;
    let err = render_err(growth);
    assert!(err.contains("over the limit of") || err.contains("exceeded maximum evaluation steps"), "{err}");
    let wide = r#"{{ (printf "%1000000d" 1) | replaceAll " " "                                                                                                    " }}"#;
    assert!(render_err(wide).contains("error calling replaceAll: replaceAll: result of"));
    let joined = r#"{{ join (printf "%1000000d" 1) (split "," (printf "%1000d" 1 | replaceAll " " ",")) }}"#;
    assert!(render_err(joined).contains("join: result of"));
    let indented = r#"{{ (printf "%100000d" 1 | replaceAll " " "x\n") | indent 1000 }}"#;
    assert!(render_err(indented).contains("indent: result of"));
}

#[test]
fn range_assigning_to_dollar_does_not_panic() {
    assert_eq!(render_ok("{{range $, $ = .Tags}}{{.}}{{end}}"), "ab");
    assert_eq!(render_ok("{{$i := 9}}{{range $i = .Tags}}{{end}}{{$i}}"), "b");
}

#[test]
fn deep_nesting_across_template_calls_is_bounded() {
    // 100 template calls of 150 nested `if`s each would be 15,000 levels of recursion.
    let nested = format!(
        "{{{{define \"r\"}}}}{}{{{{template \"r\" .}}}}{}{{{{end}}}}{{{{template \"r\" .}}}}",
        "{{if 1}}".repeat(150),
        "{{end}}".repeat(150)
    );
    // On the test harness's own thread (2 MiB of stack unless RUST_MIN_STACK says more): the
    // executor's nesting bound, not a larger stack, is what keeps this from overflowing.
    let err = render_err(&nested);
    assert!(err.contains("exceeded maximum nesting depth (1000)"), "{err}");
    let deep_key = format!("{{{{ explodeMap (parseJSON `{{\"{}x\": 1}}`) }}}}", "a/".repeat(200));
    assert!(render_err(&deep_key).contains("explodeMap: "));
}

/// Mutations of every template of the Go table (bytes dropped, duplicated, swapped, or spliced
/// from another case): parsing and rendering never panic.
#[test]
fn mutated_go_cases_never_panic() {
    use rand::{Rng, SeedableRng};
    let templates: Vec<String> =
        go_cases().1.iter().map(|case| case["tmpl"].as_str().expect("tmpl").to_string()).collect();
    let data = sample_data();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for round in 0..200 {
        for (i, tmpl) in templates.iter().enumerate() {
            let mut bytes = tmpl.clone().into_bytes();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..=bytes.len());
                match rng.gen_range(0..4) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 if at < bytes.len() => {
                        let b = bytes[at];
                        bytes.insert(at, b);
                    }
                    2 => {
                        let other = templates[(i + round + 1) % templates.len()].as_bytes();
                        let from = rng.gen_range(0..=other.len());
                        let to = rng.gen_range(from..=other.len());
                        bytes.splice(at..at, other[from..to].iter().copied());
                    }
                    _ => {
                        let pool = b"{}()|$.-\"`' \n";
                        bytes.insert(at, pool[rng.gen_range(0..pool.len())])
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(template) = Template::parse("t", &text, ("", "")) {
                let _ = template.render(&data, &mut Fixed::default(), &RenderOptions::default());
            }
        }
    }
}
