//! A server whose data directory fills up, on a real file system: a `muster agent -server
//! -bootstrap` with its `-data-dir` on a 2 MiB tmpfs. Once the write-ahead log cannot grow,
//! writes are refused with the file system's words while reads go on; when space is freed,
//! the write that was waiting completes and writes are taken again; a restart after `kill -9`
//! finds every acknowledged write.
//!
//! Needs root (CAP_SYS_ADMIN, to mount the tmpfs). Outside CI it skips with the reason when
//! that is missing; under `CI=true` it fails instead, since CI must not skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::{eventually, free_port, http};

mod common;

/// A tmpfs of a given size, unmounted (and its mount point removed) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = std::env::temp_dir().join(format!("muster-disk-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("mount: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir })
    }

    /// Gives the file system `size` (freeing space without touching a file).
    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "remount to {size}");
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data_dir: &Path, http_port: u16) -> Agent {
    let ports = common::Ports { http: http_port, ..common::Ports::free() };
    Agent(common::bootstrap_server("full", data_dir, ports))
}

/// A value of 64 KiB, different for each `i`.
fn value(i: usize) -> Vec<u8> {
    format!("{i:08}").repeat(8 * 1024).into_bytes()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_when_space_is_freed() {
    let disk = match Tmpfs::mount("2m") {
        Ok(disk) => disk,
        Err(reason) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: cannot mount a tmpfs here ({reason}); run as root");
            return;
        }
        Err(reason) => panic!("CI must run the disk-full test, but mounting a tmpfs failed: {reason}"),
    };
    let http_port = free_port();
    let url = |path: &str| format!("http://127.0.0.1:{http_port}{path}");
    let agent = start(disk.path(), http_port);
    eventually("a leader", Duration::from_secs(30), || {
        http("GET", &url("/v1/status/leader"), b"").filter(|(_, body)| body != "\"\"")
    });
    assert_eq!(http("PUT", &url("/v1/kv/keep"), b"before"), Some((200, "true".into())));

    // Fill the disk: writes succeed until the log cannot grow. The write that meets the full
    // disk waits (its entry is not durable, so it is not acknowledged); the ones after it are
    // refused at once.
    let mut acknowledged = Vec::new();
    let refusal = (0..64)
        .find_map(|i| match http("PUT", &url(&format!("/v1/kv/fill/{i}")), &value(i)) {
            Some((200, _)) => {
                acknowledged.push(i);
                None
            }
            answer => Some((i, answer)),
        })
        .expect("a 2 MiB disk fills up within 64 writes of 64 KiB");
    let waiting = refusal.0;
    let refused = eventually("writes refused", Duration::from_secs(10), || {
        http("PUT", &url("/v1/kv/refused"), b"x").filter(|(status, _)| *status == 500)
    });
    assert_eq!(refused.1, "failed to append to the Raft log: no space left on device");
    assert_eq!(http("GET", &url("/v1/kv/refused"), b"").map(|(status, _)| status), Some(404));

    // Reads go on, in both modes.
    assert_eq!(http("GET", &url("/v1/kv/keep?raw"), b""), Some((200, "before".into())));
    assert_eq!(http("GET", &url("/v1/kv/keep?raw&consistent"), b""), Some((200, "before".into())));

    // Space returns: the waiting write lands, and writes are taken again.
    disk.resize("64m");
    eventually("writes taken again", Duration::from_secs(15), || {
        http("PUT", &url("/v1/kv/after"), b"after").filter(|(status, _)| *status == 200)
    });
    let landed = http("GET", &url(&format!("/v1/kv/fill/{waiting}?raw")), b"");
    assert_eq!(
        landed.map(|(status, body)| (status, body.len())),
        Some((200, 64 * 1024)),
        "the write that waited"
    );

    // Nothing acknowledged was lost, nor is after a crash.
    drop(agent);
    let _agent = start(disk.path(), http_port);
    eventually("the restarted server leads", Duration::from_secs(30), || {
        http("GET", &url("/v1/kv/after?raw"), b"").filter(|(status, _)| *status == 200)
    });
    for i in acknowledged {
        let read = http("GET", &url(&format!("/v1/kv/fill/{i}?raw")), b"").expect("an answer");
        assert_eq!(read, (200, String::from_utf8(value(i)).unwrap()), "fill/{i}");
    }
    assert_eq!(http("GET", &url("/v1/kv/keep?raw"), b""), Some((200, "before".into())));
}
