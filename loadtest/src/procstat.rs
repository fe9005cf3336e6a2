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

/// The whole machine's CPU counters (the `cpu` line of `/proc/stat`), to
/// tell how busy the machine was during a run and how much time the host
/// took from this VM (`steal`), which no per-process figure shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct MachineStat {
    /// All ticks of all CPUs, steal included.
    total_ticks: u64,
    /// Ticks spent running anything (user, nice, system, irq, softirq).
    busy_ticks: u64,
    /// Ticks the hypervisor gave to someone else while this VM wanted a CPU.
    steal_ticks: u64,
    /// CPUs counted in `/proc/stat`.
    cpus: u64,
}

impl MachineStat {
    /// Reads `/proc/stat`; `None` where it cannot be read or parsed.
    pub fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let first = lines.next()?;
        let mut fields = first.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let v: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = v[..] else {
            return None;
        };
        let cpus = lines
            .filter(|l| {
                l.strip_prefix("cpu")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count() as u64;
        Some(Self {
            total_ticks: user + nice + system + idle + iowait + irq + softirq + steal,
            busy_ticks: user + nice + system + irq + softirq,
            steal_ticks: steal,
            cpus: cpus.max(1),
        })
    }

    /// What happened since `before`, in CPUs: `busy_cores` (on average, how
    /// many CPUs ran something) and `steal_cores` (how many the host held back).
    pub fn since(&self, before: &Self) -> serde_json::Value {
        let total = self.total_ticks.saturating_sub(before.total_ticks);
        if total == 0 {
            return serde_json::Value::Null;
        }
        let cores = |ticks: u64| ticks as f64 / total as f64 * self.cpus as f64;
        serde_json::json!({
            "cpus": self.cpus,
            "busy_cores": cores(self.busy_ticks.saturating_sub(before.busy_ticks)),
            "steal_cores": cores(self.steal_ticks.saturating_sub(before.steal_ticks)),
        })
    }
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

    #[test]
    fn machine_figures_come_from_the_cpu_line() {
        let before = super::MachineStat::parse(
            "cpu  100 0 50 800 0 0 10 40 0 0\ncpu0 50 0 25 400 0 0 5 20 0 0\ncpu1 50 0 25 400 0 0 5 20 0 0\nintr 1\n",
        )
        .unwrap();
        // 200 more ticks over 2 CPUs: 60 running, 40 stolen, 100 idle.
        let after = super::MachineStat::parse(
            "cpu  150 0 60 900 0 0 10 80 0 0\ncpu0 75 0 30 450 0 0 5 40 0 0\ncpu1 75 0 30 450 0 0 5 40 0 0\n",
        )
        .unwrap();
        let m = after.since(&before);
        assert_eq!(m["cpus"], 2);
        assert!(
            (m["busy_cores"].as_f64().unwrap() - 0.6).abs() < 1e-9,
            "{m}"
        );
        assert!(
            (m["steal_cores"].as_f64().unwrap() - 0.4).abs() < 1e-9,
            "{m}"
        );
        assert!(super::MachineStat::parse("intr 1\n").is_none());
        assert!(after.since(&after).is_null());
    }

    #[test]
    fn reads_this_machine() {
        let now = super::MachineStat::read().unwrap();
        assert!(now.cpus >= 1 && now.total_ticks > 0);
    }
}
