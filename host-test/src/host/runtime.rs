//! The wasmtime side of the platform: the component compiled once per process and
//! pre-instantiated, a fresh instance per call (the platform keeps nothing in memory between
//! calls), and the `http` and `log` imports served from the simulated [`World`].

use std::sync::OnceLock;

use anyhow::Result;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
pub use zenqms::entra_sync::types::{Method, Request, Response};

mod exports {
    pub use super::zenqms::entra_sync::types::Failure;
}

/// The `.wasm` the build script produced.
pub const COMPONENT_WASM: &str = env!("COMPONENT_WASM");

/// One log line the component wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
    pub fields: std::collections::BTreeMap<String, String>,
}

/// Per-call store data: WASI (clocks only in practice), the world, the call's log, and the
/// memory limiter.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub world: World,
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
pub const TICK: std::time::Duration = std::time::Duration::from_millis(10);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            cpu_ticks: 12_000, // two minutes of guest execution per call
        }
    }
}

/// What one call cost the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallMetrics {
    /// Real time spent in the call (guest code plus the simulated services' host code).
    pub cpu: std::time::Duration,
    /// Peak guest linear memory, bytes.
    pub peak_memory: usize,
}

impl WasiView for CallState {
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

fn from_http(r: Result<HttpResponse, crate::sim::world::Refused>) -> Result<Response, HttpError> {
    match r {
        Ok(resp) => Ok(Response {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        }),
        Err(crate::sim::world::Refused::Denied(why)) => Err(HttpError::Denied(why)),
        Err(crate::sim::world::Refused::Timeout) => Err(HttpError::Timeout),
    }
}

impl zenqms::entra_sync::types::Host for CallState {}

impl zenqms::entra_sync::http::Host for CallState {
    fn send(&mut self, req: Request) -> Result<Response, HttpError> {
        let req = to_http(req);
        let started = std::time::Instant::now();
        let answer = self.world.send(&req);
        self.world.metrics.service += started.elapsed();
        from_http(answer)
    }

    fn send_all(&mut self, reqs: Vec<Request>) -> Vec<Result<Response, HttpError>> {
        let reqs: Vec<HttpRequest> = reqs.into_iter().map(to_http).collect();
        let started = std::time::Instant::now();
        let answers = self.world.send_all(&reqs);
        self.world.metrics.service += started.elapsed();
        answers.into_iter().map(from_http).collect()
    }

    fn concurrency(&mut self) -> u32 {
        self.world.concurrency
    }

    fn wait(&mut self, ms: u32) {
        self.world.wait(ms);
    }
}

impl zenqms::entra_sync::log::Host for CallState {
    fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        self.logs.push(LogLine::new(level, message, fields));
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

/// The compiled component, linked and ready to instantiate.
pub struct Runtime {
    engine: Engine,
    pre: IntegrationPre<CallState>,
    pub limits: Limits,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

impl Runtime {
    /// The process-wide runtime: compiling the component takes seconds, so it happens once.
    pub fn shared() -> &'static Runtime {
        RUNTIME.get_or_init(|| Runtime::load(COMPONENT_WASM).expect("loading the component"))
    }

    pub fn load(path: &str) -> Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let ticker = engine.weak();
        std::thread::spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        });
        let component = Component::from_file(&engine, path)
            .map_err(|e| anyhow::anyhow!("loading component {path}: {e:?}"))?;
        let mut linker = Linker::<CallState>::new(&engine);
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

    /// A runtime of its own with other limits (compiles the component again).
    pub fn with_limits(limits: Limits) -> Result<Runtime> {
        let mut r = Runtime::load(COMPONENT_WASM)?;
        r.limits = limits;
        Ok(r)
    }

    /// Time to instantiate the pre-instantiated component once (for the benchmark).
    pub fn instantiate_time(&self, world: World) -> std::time::Duration {
        let started = std::time::Instant::now();
        let _ = self.call(world, |_, _| Ok(()));
        started.elapsed()
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

    /// Runs one handler call on a fresh instance. The world moves into the store for the call
    /// and comes back with the call's log lines, whatever the outcome.
    pub fn call<R>(
        &self,
        world: World,
        f: impl FnOnce(&Integration, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> (World, Vec<LogLine>, Result<R>) {
        // No preopens, no environment, no args, no network: clocks are the virtual clock.
        let mut builder = WasiCtx::builder();
        builder
            .wall_clock(world.clock.clone())
            .monotonic_clock(world.clock.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        let state = CallState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            world,
            logs: Vec::new(),
            limiter: MemoryLimiter {
                limit: self.limits.memory_bytes,
                peak: 0,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.limits.cpu_ticks);
        store.epoch_deadline_trap();
        let started = std::time::Instant::now();
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|bindings| f(&bindings, &mut store));
        let cpu = started.elapsed();
        let mut data = store.into_data();
        data.world.metrics.calls += 1;
        data.world.metrics.cpu += cpu;
        data.world.metrics.peak_memory = data.world.metrics.peak_memory.max(data.limiter.peak);
        (
            data.world,
            data.logs,
            result.map_err(|e| anyhow::anyhow!("{e:?}")),
        )
    }
}
