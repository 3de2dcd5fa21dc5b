//! `muster template` as consul-template users run it, against `muster agent -dev`: an nginx-like
//! upstream list from `service`, values from `key` and `ls`, `-once`, `-dry`, a render held
//! until a key exists, and a watching process that re-renders and runs its command on a change;
//! consul-template's configuration files and retries; and the agent's own `watches`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::dev_agent;

/// A process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn put(http: u16, path: &str, body: &str) {
    let api: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = api.put(format!("http://127.0.0.1:{http}{path}")).send(body).unwrap();
    assert_eq!(response.status(), 200, "{path}: {}", response.body_mut().read_to_string().unwrap());
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("muster-template-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn template(http: u16, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
    command.arg("template").args(args).env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{http}"));
    command
}

/// Polls until `path` holds `wanted`, for up to 10 s.
fn eventually_holds(path: &Path, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "{} holds {now:?}, not {wanted:?}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

const UPSTREAMS: &str =
    "upstream web {\n{{- range service \"web\" }}\n  server {{ .Address }}:{{ .Port }};\n{{- end }}\n}\n\
db={{ key \"app/config/db\" }}\n{{ range ls \"app/config\" }}{{ .Key }}={{ .Value }}\n{{ end }}";

fn seed(http: u16) {
    for (node, address, port) in [("b-node", "10.0.0.2", 8080), ("a-node", "10.0.0.1", 8081)] {
        let body = format!(
            r#"{{"Node": "{node}", "Address": "{address}", "Service": {{"Service": "web", "Port": {port}}}}}"#
        );
        put(http, "/v1/catalog/register", &body);
    }
    put(http, "/v1/kv/app/config/db", "postgres://db:5432");
    put(http, "/v1/kv/app/config/cache", "redis");
}

#[test]
fn once_renders_services_and_keys_as_consul_template_does() {
    let (_agent, http) = dev_agent(&[]);
    seed(http);
    let dir = dir("once");
    let (source, destination) = (dir.join("in.ctmpl"), dir.join("out.conf"));
    std::fs::write(&source, UPSTREAMS).unwrap();
    let spec = format!("{}:{}", source.display(), destination.display());
    let output = template(http, &["-once", "-template", &spec]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let expected = "upstream web {\n  server 10.0.0.1:8081;\n  server 10.0.0.2:8080;\n}\n\
                    db=postgres://db:5432\ncache=redis\ndb=postgres://db:5432\n";
    assert_eq!(std::fs::read_to_string(&destination).unwrap(), expected);

    // -dry prints instead of writing.
    let dry = dir.join("dry.conf");
    let spec = format!("{}:{}", source.display(), dry.display());
    // Go's other flag forms: `--once`, `-dry=true`, `-template=...`.
    let output = template(http, &["--once", "-dry=true", &format!("-template={spec}")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("> {}\n{expected}\n", dry.display()));
    assert!(!dry.exists());

    // A template that does not parse is refused with Go's words.
    std::fs::write(&source, "{{ range }}").unwrap();
    let output = template(http, &["-once", "-template", &format!("{}:{}", source.display(), dry.display())])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("template: {}:1: missing value for range", source.display())),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn key_holds_the_render_and_a_change_renders_again_and_runs_the_command() {
    let (_agent, http) = dev_agent(&[]);
    let dir = dir("watch");
    let (source, destination, marker) = (dir.join("in.ctmpl"), dir.join("out.conf"), dir.join("reloaded"));
    // `feature/unused` is read but changes nothing in the output.
    let text = "mode={{ key \"feature/mode\" }}\n{{ with keyOrDefault \"feature/unused\" \"\" }}{{ end }}";
    std::fs::write(&source, text).unwrap();
    let spec = format!("{}:{}:echo reload >> {}", source.display(), destination.display(), marker.display());
    // Killed when dropped, so a failing assertion leaves no process behind.
    let watching = template(http, &["-template", &spec]).stdout(Stdio::null()).spawn().unwrap();
    let _watching = Killed(watching);
    // Nothing is written while the key does not exist.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!destination.exists());
    put(http, "/v1/kv/feature/mode", "blue");
    eventually_holds(&destination, "mode=blue\n");
    put(http, "/v1/kv/feature/mode", "green");
    eventually_holds(&destination, "mode=green\n");
    eventually_holds(&marker, "reload\nreload\n");
    // A write that changes nothing, or changes data the output does not show, renders nothing
    // new and runs nothing.
    put(http, "/v1/kv/feature/mode", "green");
    put(http, "/v1/kv/feature/unused", "x");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "reload\nreload\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An agent that cannot be reached: each failed query is retried with consul-template's
/// doubling pauses, then the run ends with its runner-error status (14) instead of waiting
/// forever, as consul-template's `-consul-retry-attempts` has it; `-consul-retry=false`
/// ends it at the first failure.
#[test]
fn a_dependency_out_of_retries_ends_the_run_with_consul_templates_status() {
    let dir = dir("retries");
    let source = dir.join("in.ctmpl");
    std::fs::write(&source, "{{ key \"app/missing\" }}\n").unwrap();
    let spec = format!("-template={}:{}", source.display(), dir.join("out").display());
    let nobody = common::free_port();
    let output = within(
        Duration::from_secs(20),
        template(nobody, &["-once", "-consul-retry-attempts=3", "-consul-retry-backoff", "20ms", &spec]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(14), "{stderr}");
    for (attempt, pause) in [(1, "20ms"), (2, "40ms"), (3, "80ms")] {
        assert!(stderr.contains(&format!("(retry attempt {attempt} after \"{pause}\")")), "{stderr}");
    }
    assert!(!stderr.contains("retry attempt 4"), "{stderr}");
    assert!(stderr.contains("(exceeded maximum retries)") && stderr.contains("[ERR] (cli) "), "{stderr}");

    let output = within(Duration::from_secs(20), template(nobody, &["-once", "-consul-retry=false", &spec]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(14), "{stderr}");
    assert!(!stderr.contains("retry attempt"), "{stderr}");
}

/// `command`'s output once it exits; a failure if it is still running after `limit` (it is
/// killed then).
fn within(limit: Duration, mut command: Command) -> std::process::Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A consul-template configuration file, as its users keep them: the agent's address, retries
/// and waits in a `consul` block, an inline template with its own delimiters, mode, command as
/// a list and a directory to make, and a second template from a file with a backup. Flags win
/// over the file; a key consul-template does not know is refused in its decoder's words.
#[test]
fn a_consul_template_config_file_renders_as_consul_template_does() {
    let (_agent, http) = dev_agent(&[]);
    seed(http);
    let dir = dir("config");
    let d = dir.display();
    std::fs::write(dir.join("in.ctmpl"), "cache={{ key \"app/config/cache\" }}\n").unwrap();
    std::fs::write(dir.join("second.conf"), "old\n").unwrap();
    let config = format!(
        r#"
consul {{
  address = "127.0.0.1:1"
  retry {{
    attempts = 2
    backoff = "10ms"
  }}
}}
max_stale = "0s"
wait {{
  min = "10ms"
  max = "50ms"
}}
pid_file = "{d}/ct.pid"
template {{
  contents = "[[ key \"app/config/db\" ]] at [[ range service \"web\" ]][[ .Address ]]:[[ .Port ]] [[ end ]]"
  left_delimiter = "[["
  right_delimiter = "]]"
  destination = "{d}/nested/out.conf"
  perms = 0600
  command = ["sh", "-c", "echo ran >> {d}/ran"]
}}
template {{
  source = "{d}/in.ctmpl"
  destination = "{d}/second.conf"
  backup = true
}}
"#
    );
    let file = dir.join("ct.hcl");
    std::fs::write(&file, config).unwrap();
    // The file's address is wrong; the flag's wins.
    let output = within(
        Duration::from_secs(30),
        template(
            http,
            &["-once", "-config", &file.display().to_string(), &format!("-consul-addr=127.0.0.1:{http}")],
        ),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let out = dir.join("nested/out.conf");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "postgres://db:5432 at 10.0.0.1:8081 10.0.0.2:8080 ");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(dir.join("ran")).unwrap(), "ran\n");
    assert_eq!(std::fs::read_to_string(dir.join("second.conf")).unwrap(), "cache=redis\n");
    assert_eq!(std::fs::read_to_string(dir.join("second.conf.bak")).unwrap(), "old\n");
    assert!(!dir.join("ct.pid").exists(), "the pid file is removed at exit");

    // Without the flag, the file's address is used: nothing answers there, and the retries
    // the file asks for run out.
    let output =
        within(Duration::from_secs(30), template(http, &["-once", "-config", &file.display().to_string()]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(14), "{stderr}");
    assert!(
        stderr.contains("retry attempt 2 after \"20ms\"") && !stderr.contains("retry attempt 3"),
        "{stderr}"
    );

    // A directory of files; a key consul-template does not know.
    let configs = dir.join("conf.d");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(
        configs.join("a.hcl"),
        "bogus = 1\ntemplate {\n  source = \"x\"\n  destination = \"y\"\n}\n",
    )
    .unwrap();
    let output = within(
        Duration::from_secs(30),
        template(http, &["-once", "-config", &configs.display().to_string()]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 error(s) decoding:\n\n* '' has invalid keys: bogus"), "{stderr}");
}

/// The agent's own `watches`, as a Consul agent config has them: each change of the key runs
/// the handler (`args`, directly) with the entry as JSON on stdin and `CONSUL_INDEX` set; the
/// older `handler` string runs through the shell; a watch plan that does not compile stops
/// the agent in Consul's words.
#[test]
fn the_agents_watches_run_their_handlers_on_each_change() {
    let dir = dir("watches");
    let (seen, old_style) = (dir.join("seen"), dir.join("old-style"));
    let hcl = format!(
        "-hcl=watches = [{{ type = \"key\" key = \"w/k\" args = [\"sh\", \"-c\", \"cat >> {} && echo \\\" $CONSUL_INDEX\\\" >> {}\"] }}, \
         {{ type = \"keyprefix\" prefix = \"w/\" handler = \"cat > {}\" }}]",
        seen.display(),
        seen.display(),
        old_style.display()
    );
    let (_agent, http) = dev_agent(&[&hcl]);
    put(http, "/v1/kv/w/k", "first");
    let first = wait_for(&seen, |text| text.contains("Zmlyc3Q="));
    put(http, "/v1/kv/w/k", "second");
    let both = wait_for(&seen, |text| text.contains("c2Vjb25k"));
    assert!(both.starts_with(&first), "{both}");
    let index_line = both.lines().find(|line| line.trim_start().parse::<u64>().is_ok());
    assert!(index_line.is_some(), "CONSUL_INDEX reached the handler: {both}");
    wait_for(&old_style, |text| text.contains("\"Key\":\"w/k\""));

    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-hcl=watches = [{ type = \"key\" args = [\"true\"] }]"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "Failed to compile watch parameters: Error parsing watch: Must specify a single key to watch"
        ),
        "{stderr}"
    );
}

/// The contents of `path` once `ready` holds for them (within 20 s).
fn wait_for(path: &Path, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if ready(&text) {
            return text;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{} never got there: {text:?}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
