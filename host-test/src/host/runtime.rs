//! The wasmtime side of the platform, one runtime for every host: the component compiled once
//! per build (`compiled.rs`) and pre-instantiated, a fresh instance per call (the platform keeps nothing in
//! memory between calls), the call's memory and CPU limited, and the `http` and `log` imports
//! served by a [`Network`] — the simulated [`World`] (scenarios, bench, serve) or real HTTP
//! (live `run`, in `tools::live`).

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::sim::http_types::{HttpRequest, HttpResponse};
use crate::sim::world::World;

// `wasi:random/random` is WASI's own: wasmtime-wasi implements it (added with the rest of
// WASI 0.2 below), so the bindings reuse its types instead of generating a second copy.
wasmtime::component::bindgen!({
    world: "integration",
    path: "../wit",
    with: { "wasi:random/random": wasmtime_wasi::p2::bindings::random::random },
});

pub use exports::Failure as WitFailure;
pub use zenqms::entra_sync::http::HttpError;
pub use zenqms::entra_sync::log::Level;
pub use zenqms::entra_sync::types::{Action, InboxItem, Method, Request, Response};

mod exports {
    pub use super::zenqms::entra_sync::types::Failure;
}

/// The `.wasm` the build script produced.
pub const COMPONENT_WASM: &str = env!("COMPONENT_WASM");

/// The `.wasm` the simulator runs: `HOST_TEST_COMPONENT` when set (another build of the
/// component: an unstripped one to profile, or an earlier one to compare reports with), else
/// the build's own ([`COMPONENT_WASM`]). `package` always bundles the build's own.
pub fn component_path() -> String {
    std::env::var("HOST_TEST_COMPONENT").unwrap_or_else(|_| COMPONENT_WASM.to_string())
}

/// What a call's `http` import reaches, and what else of the call the host keeps: the
/// simulated world, or the real network.
pub trait Network: Send + 'static {
    /// Sends one request and waits for its answer.
    fn send(&mut self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let no_answer = || HttpError::Transport("no answer".into());
        self.send_all(vec![req])
            .pop()
            .unwrap_or_else(|| Err(no_answer()))
    }
    /// Sends requests at most [`Network::concurrency`] at a time; one result per request, in
    /// request order.
    fn send_all(&mut self, reqs: Vec<HttpRequest>) -> Vec<Result<HttpResponse, HttpError>>;
    /// The `concurrency` the platform announces (at least 1).
    fn concurrency(&self) -> u32;
    /// A retry's wait: virtual time passes, or the thread sleeps.
    fn wait(&mut self, ms: u32);
    /// The guest's wall and monotonic clocks, when they are not the real ones.
    fn clocks(&self) -> Option<crate::sim::clock::VirtualClock> {
        None
    }
    /// The seed of the guest's `wasi:random` for the next call, when it is not the operating
    /// system's: a simulated world with injected faults gives a seeded sequence so that a run
    /// repeats exactly (the component's retry jitter draws from it).
    fn random_seed(&mut self) -> Option<u64> {
        None
    }
    /// A log line the component wrote, and its fields in the order written (a live host
    /// prints it).
    fn logged(&mut self, _line: &LogLine, _fields: &[(String, String)]) {}
    /// After each call: its host time and the guest's peak memory.
    fn call_ended(&mut self, _cpu: Duration, _peak_memory: usize) {}
    /// Host time spent answering the guest's requests so far (cumulative): the guest's
    /// execution limit ([`Limits::cpu_ticks`]) does not count it.
    fn service_time(&self) -> Duration {
        Duration::ZERO
    }
}

impl Network for World {
    fn send(&mut self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let started = std::time::Instant::now();
        let answer = World::send(self, &req);
        self.metrics.service += started.elapsed();
        from_refused(answer)
    }

    fn send_all(&mut self, reqs: Vec<HttpRequest>) -> Vec<Result<HttpResponse, HttpError>> {
        let started = std::time::Instant::now();
        let answers = World::send_all(self, &reqs);
        self.metrics.service += started.elapsed();
        answers.into_iter().map(from_refused).collect()
    }

    fn concurrency(&self) -> u32 {
        self.concurrency
    }

    fn service_time(&self) -> Duration {
        self.metrics.service
    }

    fn wait(&mut self, ms: u32) {
        World::wait(self, ms);
    }

    fn clocks(&self) -> Option<crate::sim::clock::VirtualClock> {
        Some(self.clock.clone())
    }

    fn random_seed(&mut self) -> Option<u64> {
        self.next_random_seed()
    }

    fn call_ended(&mut self, cpu: Duration, peak_memory: usize) {
        self.metrics.calls += 1;
        self.metrics.cpu += cpu;
        self.metrics.peak_memory = self.metrics.peak_memory.max(peak_memory);
    }
}

/// One log line the component wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
    pub fields: std::collections::BTreeMap<String, String>,
}

/// Per-call store data: WASI (clocks only in practice), the network, the call's log, and the
/// memory limiter.
pub struct CallState<N: Network> {
    wasi: WasiCtx,
    table: ResourceTable,
    pub net: N,
    pub logs: Vec<LogLine>,
    limiter: MemoryLimiter,
}

/// Caps the guest's linear memory and records its peak.
struct MemoryLimiter {
    limit: usize,
    peak: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Ok(false); // the guest sees an allocation failure and aborts: a clean trap
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Resource limits for one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest guest linear memory, bytes.
    pub memory_bytes: usize,
    /// Longest guest execution, in epoch ticks of [`TICK`].
    pub cpu_ticks: u64,
}

/// The epoch tick: a background thread advances the engine's epoch this often.
pub const TICK: Duration = Duration::from_millis(10);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            cpu_ticks: 12_000, // two minutes of guest execution per call
        }
    }
}

impl<N: Network> WasiView for CallState<N> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

pub fn to_http(req: Request) -> HttpRequest {
    HttpRequest {
        method: method_name(req.method).into(),
        url: req.url,
        headers: req.headers,
        body: req.body,
    }
}

fn from_refused(
    r: Result<HttpResponse, crate::sim::world::Refused>,
) -> Result<HttpResponse, HttpError> {
    r.map_err(|e| match e {
        crate::sim::world::Refused::Denied(why) => HttpError::Denied(why),
        crate::sim::world::Refused::Timeout => HttpError::Timeout,
    })
}

fn to_wit(r: Result<HttpResponse, HttpError>) -> Result<Response, HttpError> {
    r.map(|resp| Response {
        status: resp.status,
        headers: resp.headers,
        body: resp.body,
    })
}

impl<N: Network> zenqms::entra_sync::types::Host for CallState<N> {}

impl<N: Network> zenqms::entra_sync::http::Host for CallState<N> {
    fn send(&mut self, req: Request) -> Result<Response, HttpError> {
        let answer = self.net.send(to_http(req));
        to_wit(answer)
    }

    fn send_all(&mut self, reqs: Vec<Request>) -> Vec<Result<Response, HttpError>> {
        let reqs: Vec<HttpRequest> = reqs.into_iter().map(to_http).collect();
        self.net.send_all(reqs).into_iter().map(to_wit).collect()
    }

    fn concurrency(&mut self) -> u32 {
        self.net.concurrency().max(1)
    }

    fn wait(&mut self, ms: u32) {
        self.net.wait(ms);
    }
}

impl<N: Network> zenqms::entra_sync::log::Host for CallState<N> {
    fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let line = LogLine::new(level, message, fields.clone());
        self.net.logged(&line, &fields);
        self.logs.push(line);
    }
}

impl LogLine {
    /// A line as the component wrote it through the WIT `log` import.
    pub fn new(level: Level, message: String, fields: Vec<(String, String)>) -> Self {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        LogLine {
            level: level.into(),
            message,
            fields: fields.into_iter().collect(),
        }
    }
}

/// The compiled component, linked against a [`Network`] and ready to instantiate.
pub struct Runtime<N: Network = World> {
    engine: Engine,
    pre: IntegrationPre<CallState<N>>,
    pub limits: Limits,
}

static RUNTIME: OnceLock<Runtime<World>> = OnceLock::new();

impl Runtime<World> {
    /// The process-wide simulator runtime: compiling the component takes seconds, so it
    /// happens once.
    pub fn shared() -> &'static Runtime<World> {
        RUNTIME.get_or_init(|| Runtime::load(&component_path()).expect("loading the component"))
    }

    /// A runtime of its own with other limits (compiles the component again).
    pub fn with_limits(limits: Limits) -> Result<Runtime<World>> {
        let mut r = Runtime::load(&component_path())?;
        r.limits = limits;
        Ok(r)
    }

    /// Time to instantiate the pre-instantiated component once (for the benchmark).
    pub fn instantiate_time(&self, world: World) -> Duration {
        let started = std::time::Instant::now();
        let _ = self.call(world, |_, _| Ok(()));
        started.elapsed()
    }
}

impl<N: Network> Runtime<N> {
    /// One runtime per network type per process, compiled on first use: `cell` is that
    /// type's static. A lock makes threads asking at once (tests) wait for one compile.
    pub fn shared_in(cell: &'static OnceLock<Runtime<N>>) -> Result<&'static Runtime<N>>
    where
        Runtime<N>: Sync + Send,
    {
        static COMPILING: Mutex<()> = Mutex::new(());
        let _guard = COMPILING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = cell.get() {
            return Ok(r);
        }
        let r = Runtime::load(&component_path())?;
        Ok(cell.get_or_init(|| r))
    }

    pub fn load(path: &str) -> Result<Runtime<N>> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        if std::env::var_os("HOST_TEST_PERFMAP").is_some() {
            // `/tmp/perf-<pid>.map` names the compiled component's functions for `perf report`
            // (docs/performance.md, "Profiling the component"); compiled afresh, not loaded
            // from the cache, so every function is registered as it is compiled.
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let ticker = engine.weak();
        std::thread::spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        });
        let perfmap = std::env::var_os("HOST_TEST_PERFMAP").is_some();
        let component = super::compiled::component(&engine, path, !perfmap)?;
        let mut linker = Linker::<CallState<N>>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // The platform's own interfaces; `wasi:random/random` came with WASI above.
        zenqms::entra_sync::http::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        zenqms::entra_sync::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        let pre = IntegrationPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Runtime {
            engine,
            pre,
            limits: Limits::default(),
        })
    }

    /// The component's exports, by name.
    pub fn exports(&self) -> Vec<String> {
        let component = self.pre.instance_pre().component();
        let ty = component.component_type();
        ty.exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// The component's imports, as interface names (for the sandbox test).
    pub fn imports(&self) -> Vec<String> {
        let component = self.pre.instance_pre().component();
        let ty = component.component_type();
        ty.imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Runs one handler call on a fresh instance. The network moves into the store for the
    /// call and comes back with the call's log lines, whatever the outcome.
    pub fn call<R>(
        &self,
        mut net: N,
        f: impl FnOnce(&Integration, &mut Store<CallState<N>>) -> wasmtime::Result<R>,
    ) -> (N, Vec<LogLine>, Result<R>) {
        // No preopens, no environment, no args, no network: the clocks and the random source
        // are the network's (virtual and seeded in the simulator) or the real ones.
        let mut builder = WasiCtxBuilder::new();
        if let Some(clock) = net.clocks() {
            builder.wall_clock(clock.clone()).monotonic_clock(clock);
        }
        if let Some(seed) = net.random_seed() {
            use rand::SeedableRng;
            builder.secure_random(rand::rngs::StdRng::seed_from_u64(seed));
        }
        builder
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        let state = CallState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            net,
            logs: Vec::new(),
            limiter: MemoryLimiter {
                limit: self.limits.memory_bytes,
                peak: 0,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.limits.cpu_ticks);
        // The limit is on the guest's own execution: the epoch also ticks while the host
        // answers a request (the simulated services scan their directories: minutes at
        // 100,000 users on a busy machine), and that time is given back.
        let limit = self.limits.cpu_ticks;
        let served_before = store.data().net.service_time();
        let began = std::time::Instant::now();
        store.epoch_deadline_callback(move |ctx| {
            let served = ctx.data().net.service_time().saturating_sub(served_before);
            let guest = began.elapsed().saturating_sub(served);
            let used = u64::try_from(guest.as_millis() / TICK.as_millis()).unwrap_or(u64::MAX);
            if used >= limit {
                return Err(wasmtime::Error::msg(format!(
                    "the call ran past its limit of guest execution ({limit} ticks of {TICK:?})"
                )));
            }
            Ok(wasmtime::UpdateDeadline::Continue(limit - used))
        });
        let started = std::time::Instant::now();
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|bindings| f(&bindings, &mut store));
        let cpu = started.elapsed();
        let mut data = store.into_data();
        data.net.call_ended(cpu, data.limiter.peak);
        (
            data.net,
            data.logs,
            result.map_err(|e| anyhow::anyhow!("{e:?}")),
        )
    }
}
