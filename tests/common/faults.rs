//! Fault injection for integration tests: a TCP proxy that sits between a
//! client and xmpp-edge, or between xmpp-edge and its upstream server, and
//! does to each connection what a seeded schedule says: pass it through,
//! delay it, cut it after N bytes in one direction (FIN both ways), reset it
//! (RST, SO_LINGER 0), stall one direction, shut one direction down, or cut
//! it after some time. Every choice comes from [`Rng`], seeded by
//! [`seed`], so a failing run is replayed with `FAULT_SEED=<seed>`.
//!
//! Loopback only; every connection ends when the proxy is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// SplitMix64: small, fast, and the same sequence for the same seed everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration uniform in `lo..=hi`.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }

    /// An independent generator (for another task), derived deterministically.
    pub fn fork(&mut self) -> Self {
        Self(self.next_u64())
    }
}

/// The seed of this test: `FAULT_SEED` if set, else fresh. Printed, so that
/// the captured output of a failing test names it.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            Rng::new(nanos ^ u64::from(std::process::id())).next_u64() % 1_000_000_007
        });
    eprintln!("{test}: FAULT_SEED={seed} (set FAULT_SEED={seed} to replay)");
    seed
}

/// A direction through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the connecting side (client, or xmpp-edge to its upstream) to the target.
    Up,
    /// From the target back.
    Down,
}

/// What happens to one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded untouched.
    Pass,
    /// Each chunk is held back this long before it is forwarded.
    Delay(Duration),
    /// After `bytes` bytes in `dir`, both sides are closed (FIN): a request
    /// or response cut in the middle.
    Cut { dir: Dir, bytes: usize },
    /// Like `Cut`, but both sides get a TCP reset.
    Reset { dir: Dir, bytes: usize },
    /// Both sides are closed this long after the connection opened, whatever was sent.
    CutAt(Duration),
    /// After `bytes` bytes in `dir`, that direction is no longer read or
    /// forwarded, and nothing is closed: a stuck peer or a half-open path.
    Stall { dir: Dir, bytes: usize },
    /// After `bytes` bytes in `dir`, that direction is shut down (FIN to its
    /// receiver); the other direction carries on.
    HalfClose { dir: Dir, bytes: usize },
}

/// Chooses the fault of each new connection: (connection number, rng) → fault.
pub type Plan = Box<dyn FnMut(u64, &mut Rng) -> Fault + Send>;

/// Counts what the proxy did.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub faults: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

/// The proxy. Dropping it ends every connection it carries.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    plan: Arc<Mutex<(Plan, Rng)>>,
    frozen: Arc<[AtomicBool; 2]>,
    tap_down: Arc<Mutex<Option<Vec<u8>>>>,
    kill: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target` with `plan`.
    pub async fn start(target: SocketAddr, seed: u64, plan: Plan) -> Self {
        assert!(
            target.ip().is_loopback(),
            "the fault proxy is loopback only"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let counters = Arc::new(Counters::default());
        let plan = Arc::new(Mutex::new((plan, Rng::new(seed))));
        let frozen = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let tap_down = Arc::new(Mutex::new(None));
        let (kill, killed) = watch::channel(0u64);
        let ctx = Ctx {
            target,
            counters: Arc::clone(&counters),
            frozen: Arc::clone(&frozen),
            tap_down: Arc::clone(&tap_down),
            killed,
        };
        let plan_for_accept = Arc::clone(&plan);
        let accept = tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((inbound, _)) = listener.accept().await {
                let fault = {
                    let mut guard = plan_for_accept.lock();
                    let (plan, rng) = &mut *guard;
                    plan(n, rng)
                };
                n += 1;
                ctx.counters.connections.fetch_add(1, Ordering::Relaxed);
                if fault != Fault::Pass {
                    ctx.counters.faults.fetch_add(1, Ordering::Relaxed);
                }
                tokio::spawn(run(inbound, fault, ctx.clone()));
            }
        });
        Self {
            addr,
            counters,
            plan,
            frozen,
            tap_down,
            kill,
            accept,
        }
    }

    /// A proxy that passes everything (until its plan is changed).
    pub async fn transparent(target: SocketAddr) -> Self {
        Self::start(target, 0, Box::new(|_, _| Fault::Pass)).await
    }

    /// Replaces the plan for connections accepted from now on.
    pub fn set_plan(&self, plan: Plan) {
        self.plan.lock().0 = plan;
    }

    /// Stops (or resumes) reading and forwarding `dir` on every connection,
    /// without closing anything: a network path that went silent.
    pub fn freeze(&self, dir: Dir, frozen: bool) {
        self.frozen[dir as usize].store(frozen, Ordering::SeqCst);
    }

    /// Starts recording every byte forwarded `Down` on every connection.
    pub fn record_down(&self) {
        *self.tap_down.lock() = Some(Vec::new());
    }

    /// What was recorded so far.
    pub fn recorded_down(&self) -> Vec<u8> {
        self.tap_down.lock().clone().unwrap_or_default()
    }

    /// Resets every open connection (RST both sides).
    pub fn reset_all(&self) {
        self.kill.send_modify(|n| *n += 1);
    }

    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    pub fn faults(&self) -> u64 {
        self.counters.faults.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset_all();
    }
}

#[derive(Clone)]
struct Ctx {
    target: SocketAddr,
    counters: Arc<Counters>,
    frozen: Arc<[AtomicBool; 2]>,
    tap_down: Arc<Mutex<Option<Vec<u8>>>>,
    killed: watch::Receiver<u64>,
}

fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// How far one direction may go before its fault fires, and what it is.
struct Budget {
    dir: Dir,
    bytes: usize,
    then: Then,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    Close,
    Reset,
    Stall,
    HalfClose,
}

/// Carries one connection under `fault`.
async fn run(inbound: TcpStream, fault: Fault, ctx: Ctx) {
    let Ok(outbound) = TcpStream::connect(ctx.target).await else {
        // The target is down: the client sees its connection reset.
        reset(&inbound);
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let budget = match fault {
        Fault::Cut { dir, bytes } => Some(Budget {
            dir,
            bytes,
            then: Then::Close,
        }),
        Fault::Reset { dir, bytes } => Some(Budget {
            dir,
            bytes,
            then: Then::Reset,
        }),
        Fault::Stall { dir, bytes } => Some(Budget {
            dir,
            bytes,
            then: Then::Stall,
        }),
        Fault::HalfClose { dir, bytes } => Some(Budget {
            dir,
            bytes,
            then: Then::HalfClose,
        }),
        _ => None,
    };
    let delay = match fault {
        Fault::Delay(d) => d,
        _ => Duration::ZERO,
    };
    let cut_at = match fault {
        Fault::CutAt(d) => Some(tokio::time::Instant::now() + d),
        _ => None,
    };
    let mut killed = ctx.killed.clone();
    killed.mark_unchanged();
    let (mut cr, mut cw) = inbound.into_split();
    let (mut sr, mut sw) = outbound.into_split();
    // Bytes still allowed through per direction, and whether it is still read.
    let mut left = [usize::MAX, usize::MAX];
    if let Some(b) = &budget {
        left[b.dir as usize] = b.bytes;
    }
    let mut reading = [true, true];
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let mut hard_reset = false;
    loop {
        if !reading[0] && !reading[1] {
            // Both directions finished or stalled: wait for the end.
            tokio::select! {
                _ = killed.changed() => { hard_reset = true; break; }
                _ = sleep_until_opt(cut_at) => break,
                _ = tokio::time::sleep(Duration::from_secs(120)) => break,
            }
        }
        let frozen = [
            ctx.frozen[0].load(Ordering::SeqCst),
            ctx.frozen[1].load(Ordering::SeqCst),
        ];
        let (dir, n) = tokio::select! {
            _ = killed.changed() => { hard_reset = true; break; }
            _ = sleep_until_opt(cut_at) => break,
            r = cr.read(&mut up_buf), if reading[0] && !frozen[0] => (Dir::Up, r.unwrap_or(0)),
            r = sr.read(&mut down_buf), if reading[1] && !frozen[1] => (Dir::Down, r.unwrap_or(0)),
            _ = tokio::time::sleep(Duration::from_millis(20)), if frozen[0] || frozen[1] => continue,
        };
        let i = dir as usize;
        let (buf, writer) = match dir {
            Dir::Up => (&up_buf, &mut sw),
            Dir::Down => (&down_buf, &mut cw),
        };
        if n == 0 {
            // That side closed: pass the FIN on, keep the other direction.
            reading[i] = false;
            let _ = writer.shutdown().await;
            if !reading[1 - i] {
                break;
            }
            continue;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // A chunk read as the path froze waits, so nothing passes after `freeze`.
        while ctx.frozen[i].load(Ordering::SeqCst) && !killed.has_changed().unwrap_or(true) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let allowed = n.min(left[i]);
        if allowed > 0 {
            if dir == Dir::Down
                && let Some(tap) = ctx.tap_down.lock().as_mut()
            {
                tap.extend_from_slice(&buf[..allowed]);
            }
            if writer.write_all(&buf[..allowed]).await.is_err() {
                break;
            }
            let counter = match dir {
                Dir::Up => &ctx.counters.bytes_up,
                Dir::Down => &ctx.counters.bytes_down,
            };
            counter.fetch_add(allowed as u64, Ordering::Relaxed);
            if left[i] != usize::MAX {
                left[i] -= allowed;
            }
        }
        if left[i] == 0
            && let Some(b) = &budget
        {
            match b.then {
                Then::Close => break,
                Then::Reset => {
                    hard_reset = true;
                    break;
                }
                Then::Stall => reading[i] = false,
                Then::HalfClose => {
                    reading[i] = false;
                    let _ = writer.shutdown().await;
                }
            }
            left[i] = usize::MAX;
        }
    }
    let (Ok(inbound), Ok(outbound)) = (cr.reunite(cw), sr.reunite(sw)) else {
        return;
    };
    if hard_reset {
        reset(&inbound);
        reset(&outbound);
    }
    drop(inbound);
    drop(outbound);
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
