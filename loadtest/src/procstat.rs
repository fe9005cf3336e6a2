//! What a process costs, from /proc: resident memory and CPU time.

/// A reading of one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStat {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// User + system CPU, seconds.
    pub cpu_secs: f64,
    /// The system (kernel) part of `cpu_secs`: syscalls and, on loopback,
    /// the network stack's delivery of what the process writes.
    pub sys_cpu_secs: f64,
    /// Open file descriptors.
    pub fds: u64,
}

/// Reads `pid`'s status; `None` if it is gone or not Linux.
pub fn read(pid: u32) -> Option<ProcStat> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = clock_ticks();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcStat {
        rss_kib,
        cpu_secs: (utime + stime) / ticks,
        sys_cpu_secs: stime / ticks,
        fds,
    })
}

/// Threads of `pid` (the tokio workers and blocking pool), from /proc.
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Threads:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Kernel clock ticks per second (USER_HZ), 100 on every Linux we run on.
fn clock_ticks() -> f64 {
    100.0
}

/// Readings of several processes, summed (a server and its helpers).
pub fn read_all(pids: &[u32]) -> ProcStat {
    pids.iter()
        .filter_map(|&p| read(p))
        .fold(ProcStat::default(), |a, b| ProcStat {
            rss_kib: a.rss_kib + b.rss_kib,
            cpu_secs: a.cpu_secs + b.cpu_secs,
            sys_cpu_secs: a.sys_cpu_secs + b.sys_cpu_secs,
            fds: a.fds + b.fds,
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_itself() {
        let me = super::read(std::process::id()).unwrap();
        assert!(me.rss_kib > 100);
        assert!(me.fds >= 3);
        assert!(me.sys_cpu_secs <= me.cpu_secs);
        assert!(super::threads(std::process::id()).unwrap() >= 1);
    }
}
