//! Prices proxy-wasm host calls for `bench/instructions.py`: the plugin configuration is a
//! list of operations separated by commas, optionally followed by `;` and the hex-encoded
//! arguments of a `verify_signature` call. Every request performs the operations in order in
//! its request-headers callback, then continues (or answers, for `reply`). The difference in
//! Envoy's instructions per request between two configurations is the price of what differs.
//!
//! Operations: `get1` (read `authorization`), `get5` (read five headers one by one), `getall`
//! (read the whole header map), `set1`/`set2` (set one/two headers), `time` (clock), `prop`
//! (set one filter-state property), `log` (a debug log line Envoy drops), `metric` (increment
//! a counter), `verify` (the `verify_signature` foreign function), `reply` (answer 401).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot::default()) });
}}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Get1,
    Get5,
    GetAll,
    Set1,
    Set2,
    Time,
    Prop,
    Log,
    Metric,
    Verify,
    Reply,
}

#[derive(Default)]
struct Plan {
    ops: Vec<Op>,
    verify_args: Vec<u8>,
    metric: u32,
}

#[derive(Default)]
struct ProbeRoot {
    plan: Rc<Plan>,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.trim().as_bytes();
    bytes
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).ok().and_then(|s| u8::from_str_radix(s, 16).ok()))
        .collect()
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let (ops, args) = text.split_once(';').unwrap_or((&text, ""));
        let mut plan = Plan { verify_args: unhex(args).unwrap_or_default(), ..Plan::default() };
        for name in ops.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            plan.ops.push(match name {
                "get1" => Op::Get1,
                "get5" => Op::Get5,
                "getall" => Op::GetAll,
                "set1" => Op::Set1,
                "set2" => Op::Set2,
                "time" => Op::Time,
                "prop" => Op::Prop,
                "log" => Op::Log,
                "metric" => Op::Metric,
                "verify" => Op::Verify,
                "reply" => Op::Reply,
                other => {
                    let _ = hostcalls::log(LogLevel::Critical, &format!("probe: unknown operation {other}"));
                    return false;
                }
            });
        }
        plan.metric = hostcalls::define_metric(MetricType::Counter, "probe.requests").unwrap_or(0);
        self.plan = Rc::new(plan);
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { plan: Rc::clone(&self.plan) }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    plan: Rc<Plan>,
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let plan = Rc::clone(&self.plan);
        for op in &plan.ops {
            match op {
                Op::Get1 => {
                    std::hint::black_box(self.get_http_request_header("authorization"));
                }
                Op::Get5 => {
                    for name in ["authorization", ":path", ":method", ":authority", "content-type"] {
                        std::hint::black_box(self.get_http_request_header(name));
                    }
                }
                Op::GetAll => {
                    std::hint::black_box(self.get_http_request_headers());
                }
                Op::Set1 => self.set_http_request_header("x-probe-1", Some("1")),
                Op::Set2 => {
                    self.set_http_request_header("x-probe-1", Some("1"));
                    self.set_http_request_header("x-probe-2", Some("2"));
                }
                Op::Time => {
                    std::hint::black_box(self.get_current_time());
                }
                Op::Prop => {
                    let _ = hostcalls::set_property(vec!["probe.user_id"], Some(b"bench-user"));
                }
                Op::Log => {
                    let _ = hostcalls::log(LogLevel::Debug, "probe: a debug line Envoy drops at its default level");
                }
                Op::Metric => {
                    let _ = hostcalls::increment_metric(plan.metric, 1);
                }
                Op::Verify => {
                    std::hint::black_box(hostcalls::call_foreign_function("verify_signature", Some(&plan.verify_args)).ok());
                }
                Op::Reply => {
                    self.send_http_response(401, vec![("content-type", "application/json")], Some(b"{}"));
                    return Action::Pause;
                }
            }
        }
        Action::Continue
    }
}
