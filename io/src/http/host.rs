//! `GET /v1/agent/host` and `GET /v1/agent/version` (consul `agent/agent_endpoint.go`
//! `AgentHost`, `AgentVersion`): the machine the agent runs on, in the shape of Consul's
//! `debug.HostInfo` (gopsutil's `host.InfoStat`, `mem.VirtualMemoryStat`, `cpu.InfoStat` and
//! `disk.UsageStat`, their JSON names), and the build.
//!
//! Everything is read from `/proc`, `/sys` and `/etc` with `std`, as gopsutil reads it on Linux;
//! a field that cannot be known is left at Go's zero value. The disk's usage needs `statvfs(2)`,
//! which `std` does not offer and the crate's `rustix` is not built with (its `fs` feature), so
//! the disk is reported as gopsutil reports a failed `disk.Usage`: `Disk` null and an entry in
//! `Errors`, which Go's encoder writes as `{}` (an `error` has no exported fields).

use std::sync::Arc;

use axum::extract::RawQuery;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json as value, Map, Value};

use super::{json, Api, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/agent/host", get(host)).route("/v1/agent/version", get(version))
}

/// What `/v1/agent/version` answers: Consul's `version.BuildInfo`.
pub(super) fn build_info() -> Value {
    value!({
        "SHA": crate::version::GIT_REVISION,
        "BuildDate": BUILD_DATE,
        "HumanVersion": crate::version::CONSUL_COMPATIBLE_VERSION,
        "FIPS": "",
    })
}

async fn version(RawQuery(raw): RawQuery) -> Response {
    json(&Query::parse(raw.as_deref()), &build_info()).into_response()
}

async fn host(RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    // The files are small, but a blocking read has no place on the runtime's threads.
    let info = tokio::task::spawn_blocking(collect_host_info).await.unwrap_or_else(|_| {
        value!({"Memory": null, "CPU": null, "Host": null, "Disk": null, "CollectionTime": 0, "Errors": [{}]})
    });
    json(&query, &info).into_response()
}

/// Consul's `debug.CollectHostInfo`: each part, or an error in its place.
pub(super) fn collect_host_info() -> Value {
    let collection_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
    let mut errors = Vec::new();
    let mut part = |found: Option<Value>| {
        found.unwrap_or_else(|| {
            // Go writes an `error` as `{}`.
            errors.push(Value::Object(Map::new()));
            Value::Null
        })
    };
    let host = part(host_info());
    let memory = part(memory_info());
    let disk = part(disk_usage(DISK_USAGE_PATH));
    let cpu = part(cpu_info());
    value!({
        "Memory": memory,
        "CPU": cpu,
        "Host": host,
        "Disk": disk,
        "CollectionTime": collection_time,
        "Errors": if errors.is_empty() { Value::Null } else { Value::Array(errors) },
    })
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn first_line(path: &str) -> String {
    read(path).map(|text| text.lines().next().unwrap_or_default().trim().to_owned()).unwrap_or_default()
}

/// gopsutil's `host.InfoStat`.
fn host_info() -> Option<Value> {
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
    Some(value!({
        "hostname": first_line("/proc/sys/kernel/hostname"),
        "uptime": uptime_secs,
        "bootTime": boot_time,
        "procs": procs,
        "os": std::env::consts::OS,
        "platform": platform,
        "platformFamily": family,
        "platformVersion": platform_version,
        "kernelVersion": first_line("/proc/sys/kernel/osrelease"),
        "kernelArch": std::env::consts::ARCH,
        "virtualizationSystem": virtualization_system,
        "virtualizationRole": virtualization_role,
        "hostId": host_id,
    }))
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
fn memory_info() -> Option<Value> {
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
    Some(value!({
        "total": total,
        "available": available,
        "used": used,
        "usedPercent": used_percent,
        "free": free,
        "active": kb("Active"),
        "inactive": kb("Inactive"),
        "wired": 0,
        "laundry": 0,
        "buffers": buffers,
        "cached": cached,
        "writeBack": kb("Writeback"),
        "dirty": kb("Dirty"),
        "writeBackTmp": kb("WritebackTmp"),
        "shared": kb("Shmem"),
        "slab": kb("Slab"),
        "sreclaimable": sreclaimable,
        "sunreclaim": kb("SUnreclaim"),
        "pageTables": kb("PageTables"),
        "swapCached": kb("SwapCached"),
        "commitLimit": kb("CommitLimit"),
        "committedAS": kb("Committed_AS"),
        "highTotal": kb("HighTotal"),
        "highFree": kb("HighFree"),
        "lowTotal": kb("LowTotal"),
        "lowFree": kb("LowFree"),
        "swapTotal": kb("SwapTotal"),
        "swapFree": kb("SwapFree"),
        "mapped": kb("Mapped"),
        "vmallocTotal": kb("VmallocTotal"),
        "vmallocUsed": kb("VmallocUsed"),
        "vmallocChunk": kb("VmallocChunk"),
        "hugePagesTotal": kb("HugePages_Total") / 1024,
        "hugePagesFree": kb("HugePages_Free") / 1024,
        "hugePagesRsvd": kb("HugePages_Rsvd") / 1024,
        "hugePagesSurp": kb("HugePages_Surp") / 1024,
        "hugePageSize": kb("Hugepagesize"),
        "anonHugePages": kb("AnonHugePages"),
    }))
}

/// gopsutil's `cpu.InfoStat` for each logical CPU of `/proc/cpuinfo` (each counts one core, as
/// gopsutil counts them on Linux).
fn cpu_info() -> Option<Value> {
    let text = read("/proc/cpuinfo")?;
    let cpus: Vec<Value> = text
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
            value!({
                "cpu": cpu,
                "vendorId": field("vendor_id"),
                "family": field("cpu family"),
                "model": field("model"),
                "stepping": number("stepping"),
                "physicalId": field("physical id"),
                "coreId": field("core id"),
                "cores": 1,
                "modelName": field("model name"),
                "mhz": mhz,
                "cacheSize": cache_size,
                "flags": flags,
                "microcode": field("microcode"),
            })
        })
        .collect();
    Some(Value::Array(cpus))
}

/// gopsutil's `disk.UsageStat` for `path`: needs `statvfs(2)`, out of reach without `unsafe`
/// or `rustix`'s `fs` feature (see the module documentation), so it is the failure gopsutil
/// would report.
/// gopsutil's `disk.UsageStat` of the filesystem holding `path`, from `statvfs(3)` and the
/// mount table.
fn disk_usage(path: &str) -> Option<Value> {
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
    Some(value!({
        "path": path,
        "fstype": fstype,
        "total": total,
        "free": free,
        "used": used,
        // gopsutil's: used over what is usable by an unprivileged user.
        "usedPercent": percent(used, used + free),
        "inodesTotal": stat.f_files,
        "inodesUsed": inodes_used,
        "inodesFree": stat.f_ffree,
        "inodesUsedPercent": percent(inodes_used, stat.f_files),
    }))
}

/// Consul's `BuildDate` when none is stamped into the build (`version.BuildDate`'s default).
pub(super) const BUILD_DATE: &str = "1970-01-01T00:00:01Z";

/// The filesystem whose usage is reported (Consul's `debug.DiskUsagePath`).
const DISK_USAGE_PATH: &str = "/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_info_has_consuls_parts_and_gopsutils_names() {
        let info = collect_host_info();
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
        let info = build_info();
        let keys: Vec<&String> = info.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4);
        assert_eq!(info["HumanVersion"], crate::version::CONSUL_COMPATIBLE_VERSION);
        assert_eq!(info["FIPS"], "");
    }
}
