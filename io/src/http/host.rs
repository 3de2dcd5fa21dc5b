//! `GET /v1/agent/host` and `GET /v1/agent/version` (consul `agent/agent_endpoint.go`
//! `AgentHost`, `AgentVersion`): the machine the agent runs on, in the shape of Consul's
//! `debug.HostInfo` (gopsutil's `host.InfoStat`, `mem.VirtualMemoryStat`, `cpu.InfoStat` and
//! `disk.UsageStat`, their JSON names), and the build.
//!
//! Everything is read from `/proc`, `/sys` and `/etc` with `std`, as gopsutil reads it on Linux,
//! and the disk's usage with `rustix`'s `statvfs`; a field that cannot be known is left at Go's
//! zero value. A part that cannot be read at all is reported as gopsutil reports a failure:
//! `null` and an entry in `Errors`, which Go's encoder writes as `{}` (an `error` has no exported
//! fields).

use std::sync::Arc;

use axum::extract::RawQuery;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::shapes::Empty;
use super::{json, Api, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/agent/host", get(host)).route("/v1/agent/version", get(version))
}

/// What `/v1/agent/version` answers.
pub(super) fn build_info() -> BuildInfo {
    BuildInfo {
        sha: crate::version::GIT_REVISION,
        build_date: BUILD_DATE,
        human_version: crate::version::CONSUL_COMPATIBLE_VERSION,
        fips: "",
    }
}

async fn version(RawQuery(raw): RawQuery) -> Response {
    json(&Query::parse(raw.as_deref()), &build_info()).into_response()
}

async fn host(RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    // The files are small, but a blocking read has no place on the runtime's threads.
    let info = tokio::task::spawn_blocking(collect_host_info).await.unwrap_or_else(|_| HostInfo::failed());
    json(&query, &info).into_response()
}

/// Consul's `debug.CollectHostInfo`: each part, or an error in its place.
fn collect_host_info() -> HostInfo {
    let collection_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
    let host = host_info();
    let memory = memory_info();
    let disk = disk_usage(DISK_USAGE_PATH);
    let cpu = cpu_info();
    let failed = [host.is_none(), memory.is_none(), disk.is_none(), cpu.is_none()];
    let errors: Vec<Empty> = failed.into_iter().filter(|failed| *failed).map(|_| Empty {}).collect();
    HostInfo { memory, cpu, host, disk, collection_time, errors: (!errors.is_empty()).then_some(errors) }
}

/// Consul's `version.BuildInfo` (`/v1/agent/version`).
#[derive(Serialize)]
pub(super) struct BuildInfo {
    #[serde(rename = "SHA")]
    sha: &'static str,
    #[serde(rename = "BuildDate")]
    build_date: &'static str,
    #[serde(rename = "HumanVersion")]
    human_version: &'static str,
    #[serde(rename = "FIPS")]
    fips: &'static str,
}

/// Consul's `debug.HostInfo`: each part, or `null` and an entry in `Errors` when it could not
/// be read.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct HostInfo {
    memory: Option<MemoryStat>,
    #[serde(rename = "CPU")]
    cpu: Option<Vec<CpuStat>>,
    host: Option<HostStat>,
    disk: Option<DiskStat>,
    /// Nanoseconds since the Unix epoch.
    collection_time: i64,
    /// Go writes an `error` as `{}`; `null` when there is none.
    errors: Option<Vec<Empty>>,
}

impl HostInfo {
    /// The answer when the collection itself failed: nothing, and one error.
    fn failed() -> HostInfo {
        HostInfo {
            memory: None,
            cpu: None,
            host: None,
            disk: None,
            collection_time: 0,
            errors: Some(vec![Empty {}]),
        }
    }
}

/// gopsutil's `host.InfoStat`.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct HostStat {
    hostname: String,
    uptime: u64,
    boot_time: u64,
    procs: usize,
    os: &'static str,
    platform: String,
    platform_family: String,
    platform_version: String,
    kernel_version: String,
    kernel_arch: &'static str,
    virtualization_system: &'static str,
    virtualization_role: &'static str,
    host_id: String,
}

/// gopsutil's `mem.VirtualMemoryStat`, in bytes (`/proc/meminfo` counts kB).
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct MemoryStat {
    total: u64,
    available: u64,
    used: u64,
    used_percent: f64,
    free: u64,
    active: u64,
    inactive: u64,
    wired: u64,
    laundry: u64,
    buffers: u64,
    cached: u64,
    write_back: u64,
    dirty: u64,
    write_back_tmp: u64,
    shared: u64,
    slab: u64,
    sreclaimable: u64,
    sunreclaim: u64,
    page_tables: u64,
    swap_cached: u64,
    commit_limit: u64,
    #[serde(rename = "committedAS")]
    committed_as: u64,
    high_total: u64,
    high_free: u64,
    low_total: u64,
    low_free: u64,
    swap_total: u64,
    swap_free: u64,
    mapped: u64,
    vmalloc_total: u64,
    vmalloc_used: u64,
    vmalloc_chunk: u64,
    huge_pages_total: u64,
    huge_pages_free: u64,
    huge_pages_rsvd: u64,
    huge_pages_surp: u64,
    huge_page_size: u64,
    anon_huge_pages: u64,
}

/// gopsutil's `cpu.InfoStat`.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct CpuStat {
    cpu: i32,
    vendor_id: String,
    family: String,
    model: String,
    stepping: i32,
    physical_id: String,
    core_id: String,
    cores: i32,
    model_name: String,
    mhz: f64,
    cache_size: i32,
    flags: Vec<String>,
    microcode: String,
}

/// gopsutil's `disk.UsageStat`.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct DiskStat {
    path: String,
    fstype: String,
    total: u64,
    free: u64,
    used: u64,
    used_percent: f64,
    inodes_total: u64,
    inodes_used: u64,
    inodes_free: u64,
    inodes_used_percent: f64,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn first_line(path: &str) -> String {
    read(path).map(|text| text.lines().next().unwrap_or_default().trim().to_owned()).unwrap_or_default()
}

/// gopsutil's `host.InfoStat`.
fn host_info() -> Option<HostStat> {
    let uptime_secs = read("/proc/uptime")?
        .split_whitespace()
        .next()
        .and_then(|secs| secs.parse::<f64>().ok())
        .map_or(0, |secs| secs as u64);
    let boot_time = read("/proc/stat")
        .and_then(|stat| {
            stat.lines()
                .find_map(|line| line.strip_prefix("btime ").and_then(|t| t.trim().parse::<u64>().ok()))
        })
        .unwrap_or(0);
    let procs = std::fs::read_dir("/proc").map_or(0, |dir| {
        dir.filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
            .count()
    });
    let (platform, family, platform_version) = platform_information();
    let (virtualization_system, virtualization_role) = virtualization();
    // gopsutil: the machine's DMI product UUID, else this boot's ID.
    let host_id = match first_line("/sys/class/dmi/id/product_uuid") {
        id if !id.is_empty() => id.to_lowercase(),
        _ => first_line("/proc/sys/kernel/random/boot_id").to_lowercase(),
    };
    Some(HostStat {
        hostname: first_line("/proc/sys/kernel/hostname"),
        uptime: uptime_secs,
        boot_time,
        procs,
        os: std::env::consts::OS,
        platform,
        platform_family: family,
        platform_version,
        kernel_version: first_line("/proc/sys/kernel/osrelease"),
        kernel_arch: std::env::consts::ARCH,
        virtualization_system,
        virtualization_role,
        host_id,
    })
}

/// The distribution (`/etc/os-release` `ID` and `VERSION_ID`) and its family, with gopsutil's
/// family names.
fn platform_information() -> (String, String, String) {
    let Some(text) = read("/etc/os-release") else { return Default::default() };
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let platform = field("ID");
    let family = match platform.as_str() {
        "debian" | "ubuntu" | "linuxmint" | "raspbian" => "debian",
        "rhel"
        | "centos"
        | "redhat"
        | "oracle"
        | "scientific"
        | "enterpriseenterprise"
        | "amazon"
        | "xenserver"
        | "cloudlinux"
        | "ibm_powerkvm"
        | "rocky"
        | "almalinux" => "rhel",
        "suse" | "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" | "sles" | "sled" => "suse",
        "gentoo" => "gentoo",
        "arch" | "manjaro" => "arch",
        "exherbo" => "exherbo",
        "alpine" => "alpine",
        "coreos" => "coreos",
        "solus" => "solus",
        "neokylin" => "neokylin",
        "anolis" => "anolis",
        "fedora" => "fedora",
        _ => "",
    };
    (platform, family.to_owned(), field("VERSION_ID"))
}

/// gopsutil's container checks: the system and `guest`, or empty strings.
fn virtualization() -> (&'static str, &'static str) {
    if std::path::Path::new("/.dockerenv").exists() {
        return ("docker", "guest");
    }
    let cgroup = read("/proc/1/cgroup").unwrap_or_default();
    if cgroup.contains("docker") {
        ("docker", "guest")
    } else if cgroup.contains("lxc") {
        ("lxc", "guest")
    } else if cgroup.contains("machine-rkt") {
        ("rkt", "guest")
    } else if cgroup.contains("kubepods") {
        ("kubepods", "guest")
    } else if std::path::Path::new("/proc/xen").exists() {
        ("xen", "guest")
    } else {
        ("", "")
    }
}

/// gopsutil's `mem.VirtualMemoryStat` from `/proc/meminfo` (kB there, bytes here).
fn memory_info() -> Option<MemoryStat> {
    let text = read("/proc/meminfo")?;
    let kb = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| {
                let (key, rest) = line.split_once(':')?;
                (key == name).then(|| rest.split_whitespace().next()?.parse::<u64>().ok()).flatten()
            })
            .map_or(0, |kb| kb.saturating_mul(1024))
    };
    let total = kb("MemTotal");
    let free = kb("MemFree");
    let buffers = kb("Buffers");
    let sreclaimable = kb("SReclaimable");
    // gopsutil counts reclaimable slab as cache.
    let cached = kb("Cached") + sreclaimable;
    let available = match kb("MemAvailable") {
        0 => cached + free,
        available => available,
    };
    let used = total.saturating_sub(free).saturating_sub(buffers).saturating_sub(cached);
    let used_percent = if total == 0 { 0.0 } else { used as f64 / total as f64 * 100.0 };
    Some(MemoryStat {
        total,
        available,
        used,
        used_percent,
        free,
        active: kb("Active"),
        inactive: kb("Inactive"),
        wired: 0,
        laundry: 0,
        buffers,
        cached,
        write_back: kb("Writeback"),
        dirty: kb("Dirty"),
        write_back_tmp: kb("WritebackTmp"),
        shared: kb("Shmem"),
        slab: kb("Slab"),
        sreclaimable,
        sunreclaim: kb("SUnreclaim"),
        page_tables: kb("PageTables"),
        swap_cached: kb("SwapCached"),
        commit_limit: kb("CommitLimit"),
        committed_as: kb("Committed_AS"),
        high_total: kb("HighTotal"),
        high_free: kb("HighFree"),
        low_total: kb("LowTotal"),
        low_free: kb("LowFree"),
        swap_total: kb("SwapTotal"),
        swap_free: kb("SwapFree"),
        mapped: kb("Mapped"),
        vmalloc_total: kb("VmallocTotal"),
        vmalloc_used: kb("VmallocUsed"),
        vmalloc_chunk: kb("VmallocChunk"),
        // /proc/meminfo counts huge pages, not kB: undo the factor `kb` applied.
        huge_pages_total: kb("HugePages_Total") / 1024,
        huge_pages_free: kb("HugePages_Free") / 1024,
        huge_pages_rsvd: kb("HugePages_Rsvd") / 1024,
        huge_pages_surp: kb("HugePages_Surp") / 1024,
        huge_page_size: kb("Hugepagesize"),
        anon_huge_pages: kb("AnonHugePages"),
    })
}

/// gopsutil's `cpu.InfoStat` for each logical CPU of `/proc/cpuinfo` (each counts one core, as
/// gopsutil counts them on Linux).
fn cpu_info() -> Option<Vec<CpuStat>> {
    let text = read("/proc/cpuinfo")?;
    let cpus = text
        .split("\n\n")
        .filter(|block| block.lines().any(|line| line.starts_with("processor")))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| {
                        let (key, rest) = line.split_once(':')?;
                        (key.trim() == name).then(|| rest.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            let number = |name: &str| field(name).parse::<i32>().unwrap_or(0);
            let cpu = number("processor");
            // gopsutil prefers the maximum frequency cpufreq reports (kHz).
            let mhz =
                std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq"))
                    .ok()
                    .and_then(|khz| khz.trim().parse::<f64>().ok())
                    .map_or_else(|| field("cpu MHz").parse::<f64>().unwrap_or(0.0), |khz| khz / 1000.0);
            let cache_size = field("cache size")
                .split_whitespace()
                .next()
                .and_then(|kb| kb.parse::<i32>().ok())
                .unwrap_or(0);
            let flags: Vec<String> = field("flags").split_whitespace().map(str::to_owned).collect();
            CpuStat {
                cpu,
                vendor_id: field("vendor_id"),
                family: field("cpu family"),
                model: field("model"),
                stepping: number("stepping"),
                physical_id: field("physical id"),
                core_id: field("core id"),
                cores: 1,
                model_name: field("model name"),
                mhz,
                cache_size,
                flags,
                microcode: field("microcode"),
            }
        })
        .collect();
    Some(cpus)
}

/// gopsutil's `disk.UsageStat` of the filesystem holding `path`, from `statvfs(3)` and the
/// mount table.
fn disk_usage(path: &str) -> Option<DiskStat> {
    let stat = rustix::fs::statvfs(path).ok()?;
    let block = stat.f_frsize;
    let total = stat.f_blocks.saturating_mul(block);
    let free = stat.f_bavail.saturating_mul(block);
    let used = stat.f_blocks.saturating_sub(stat.f_bfree).saturating_mul(block);
    let percent = |used: u64, of: u64| if of == 0 { 0.0 } else { used as f64 / of as f64 * 100.0 };
    let inodes_used = stat.f_files.saturating_sub(stat.f_ffree);
    // The filesystem type of the longest mount point above `path`.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let fstype = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point).then_some((point.len(), kind))
        })
        .max_by_key(|(len, _)| *len)
        .map_or("", |(_, kind)| kind);
    Some(DiskStat {
        path: path.to_owned(),
        fstype: fstype.to_owned(),
        total,
        free,
        used,
        // gopsutil's: used over what is usable by an unprivileged user.
        used_percent: percent(used, used + free),
        inodes_total: stat.f_files,
        inodes_used,
        inodes_free: stat.f_ffree,
        inodes_used_percent: percent(inodes_used, stat.f_files),
    })
}

/// Consul's `BuildDate` when none is stamped into the build (`version.BuildDate`'s default).
pub(super) const BUILD_DATE: &str = "1970-01-01T00:00:01Z";

/// The filesystem whose usage is reported (Consul's `debug.DiskUsagePath`).
const DISK_USAGE_PATH: &str = "/";

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn host_info_has_consuls_parts_and_gopsutils_names() {
        let info = serde_json::to_value(collect_host_info()).unwrap();
        for part in ["Memory", "CPU", "Host", "Disk", "CollectionTime", "Errors"] {
            assert!(info.get(part).is_some(), "{part} missing: {info}");
        }
        assert!(info["CollectionTime"].as_i64().unwrap() > 0);
        if cfg!(target_os = "linux") {
            let host = &info["Host"];
            assert_eq!(host["os"], "linux");
            assert!(!host["kernelVersion"].as_str().unwrap().is_empty());
            assert!(host["bootTime"].as_u64().unwrap() > 0);
            assert!(host["procs"].as_u64().unwrap() > 0);
            let memory = &info["Memory"];
            let total = memory["total"].as_u64().unwrap();
            assert!(total > 0);
            assert!(memory["used"].as_u64().unwrap() <= total);
            assert!(memory["available"].as_u64().unwrap() <= total);
            let cpus = info["CPU"].as_array().unwrap();
            assert!(!cpus.is_empty());
            assert_eq!(cpus[0]["cpu"], 0);
            assert_eq!(cpus[0]["cores"], 1);
            let disk = &info["Disk"];
            assert_eq!(disk["path"], "/");
            assert!(!disk["fstype"].as_str().unwrap().is_empty(), "{disk}");
            let total = disk["total"].as_u64().unwrap();
            assert!(total > 0 && disk["used"].as_u64().unwrap() <= total);
            assert_eq!(info["Errors"], Value::Null, "nothing failed");
        }
    }

    #[test]
    fn version_is_consuls_build_info() {
        let info = serde_json::to_value(build_info()).unwrap();
        let keys: Vec<&String> = info.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4);
        assert_eq!(info["HumanVersion"], crate::version::CONSUL_COMPATIBLE_VERSION);
        assert_eq!(info["FIPS"], "");
    }

    /// The answers' names, pinned: Consul's parts and gopsutil's fields, all of them (at their
    /// zero values here), and the answer when collecting failed.
    #[test]
    fn host_answers_keep_consuls_and_gopsutils_names() {
        let parts = HostInfo {
            memory: Some(MemoryStat::default()),
            cpu: Some(vec![CpuStat::default()]),
            host: Some(HostStat::default()),
            disk: Some(DiskStat::default()),
            collection_time: 1,
            errors: None,
        };
        let failed = HostInfo::failed();
        let lines = [
            serde_json::to_string(&build_info()).unwrap(),
            serde_json::to_string(&parts).unwrap(),
            serde_json::to_string(&failed).unwrap(),
        ];
        super::super::shapes::assert_golden("host_shapes.golden", &lines);
    }
}
