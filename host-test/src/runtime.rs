//! The wasmtime side of the platform: the component compiled once per process and
//! pre-instantiated, a fresh instance per call (the platform keeps nothing in memory between
//! calls), and the `http` and `log` imports served from the simulated [`World`].

use std::sync::OnceLock;

use anyhow::Result;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::http_types::{HttpRequest, HttpResponse};
use crate::world::World;

wasmtime::component::bindgen!({ world: "integration", path: "../wit" });

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

/// Per-call store data: WASI (clocks only in practice), the world, and the call's log.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub world: World,
    pub logs: Vec<LogLine>,
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

fn to_http(req: Request) -> HttpRequest {
    HttpRequest {
        method: method_name(req.method).into(),
        url: req.url,
        headers: req.headers,
        body: req.body,
    }
}

fn from_http(r: Result<HttpResponse, crate::world::Denied>) -> Result<Response, HttpError> {
    match r {
        Ok(resp) => Ok(Response {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        }),
        Err(denied) => Err(HttpError::Denied(denied.0)),
    }
}

impl zenqms::entra_sync::types::Host for CallState {}

impl zenqms::entra_sync::http::Host for CallState {
    fn send(&mut self, req: Request) -> Result<Response, HttpError> {
        from_http(self.world.send(&to_http(req)))
    }

    fn send_all(&mut self, reqs: Vec<Request>) -> Vec<Result<Response, HttpError>> {
        let reqs: Vec<HttpRequest> = reqs.into_iter().map(to_http).collect();
        self.world
            .send_all(&reqs)
            .into_iter()
            .map(from_http)
            .collect()
    }
}

impl zenqms::entra_sync::log::Host for CallState {
    fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.logs.push(LogLine {
            level: level.into(),
            message,
            fields: fields.into_iter().collect(),
        });
    }
}

/// The compiled component, linked and ready to instantiate.
pub struct Runtime {
    engine: Engine,
    pre: IntegrationPre<CallState>,
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
        let engine = Engine::new(&config)?;
        let component = Component::from_file(&engine, path)
            .map_err(|e| anyhow::anyhow!("loading component {path}: {e:?}"))?;
        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Integration::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        let pre = IntegrationPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Runtime { engine, pre })
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
        };
        let mut store = Store::new(&self.engine, state);
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|bindings| f(&bindings, &mut store));
        let data = store.into_data();
        (
            data.world,
            data.logs,
            result.map_err(|e| anyhow::anyhow!("{e:?}")),
        )
    }
}
