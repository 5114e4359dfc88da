//! What one probe of a container asks for, read from its pod spec with kubelet's defaults:
//! the kind of probe, its timing and thresholds, and the check to run with its ports and
//! command already resolved against the container.

use std::collections::HashMap;
use std::time::Duration;

use keel_client::k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// kubelet's defaults for fields a probe leaves out (or sets to zero).
const DEFAULT_PERIOD_SECONDS: i32 = 10;
const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;
const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// The three probes a container may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [Self::Startup, Self::Liveness, Self::Readiness];

    /// The name kubelet's events give it: "Liveness probe failed: …".
    pub fn name(self) -> &'static str {
        match self {
            Self::Startup => "Startup",
            Self::Liveness => "Liveness",
            Self::Readiness => "Readiness",
        }
    }

    /// This kind's probe in a container spec, if it has one.
    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            Self::Startup => container.startup_probe.as_ref(),
            Self::Liveness => container.liveness_probe.as_ref(),
            Self::Readiness => container.readiness_probe.as_ref(),
        }
    }
}

/// When and how often a probe runs, and how many results in a row change its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    /// Whole seconds the container must have run before the first probe.
    pub initial_delay_seconds: u64,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        Self::of(ProbeKind::Readiness, &Probe::default())
    }
}

impl ProbeTiming {
    /// The timing `probe` asks for. Liveness and startup probes succeed after one success,
    /// whatever they say, as validation requires of them.
    pub fn of(kind: ProbeKind, probe: &Probe) -> Self {
        let positive = |value: Option<i32>, default: i32| {
            u32::try_from(value.filter(|v| *v > 0).unwrap_or(default)).unwrap_or(1)
        };
        let success_threshold = match kind {
            ProbeKind::Readiness => positive(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD),
            ProbeKind::Liveness | ProbeKind::Startup => 1,
        };
        Self {
            initial_delay_seconds: u64::try_from(probe.initial_delay_seconds.unwrap_or(0))
                .unwrap_or(0),
            period: Duration::from_secs(u64::from(positive(
                probe.period_seconds,
                DEFAULT_PERIOD_SECONDS,
            ))),
            timeout: Duration::from_secs(u64::from(positive(
                probe.timeout_seconds,
                DEFAULT_TIMEOUT_SECONDS,
            ))),
            success_threshold,
            failure_threshold: positive(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
        }
    }
}

/// HTTP or HTTPS, as `httpGet.scheme` says (HTTP when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// An `httpGet` check, ports resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGet {
    pub scheme: Scheme,
    /// The host to connect to; the pod IP when the probe names none.
    pub host: Option<String>,
    /// The port, or why it cannot be found (a probe error, not a failure).
    pub port: Result<u16, String>,
    /// Path and query as the probe gives them.
    pub path: String,
    /// `httpHeaders`, in order; a name may repeat.
    pub headers: Vec<(String, String)>,
}

impl HttpGet {
    /// The request `http` of `container` makes (a probe's or a lifecycle hook's).
    pub fn of(http: &HTTPGetAction, container: &Container) -> Self {
        let scheme = match http.scheme.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => Scheme::Http,
        };
        HttpGet {
            scheme,
            host: http.host.clone().filter(|h| !h.is_empty()),
            port: resolve_port(&http.port, container),
            path: http.path.clone().unwrap_or_default(),
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        }
    }
}

/// The check a probe runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// A command run in the container, `$(VAR)` references to its literal env expanded.
    Exec {
        command: Vec<String>,
    },
    HttpGet(HttpGet),
    /// A TCP connection to the host (the pod IP when absent) and port.
    TcpSocket {
        host: Option<String>,
        port: Result<u16, String>,
    },
    /// grpc.health.v1 Health/Check on the pod IP and port for `service` ("" for the server).
    Grpc {
        port: Result<u16, String>,
        service: String,
    },
    /// A probe with no handler; validation forbids it, so it only ever errors.
    Missing,
}

impl ProbeAction {
    /// The check `probe` of `container` runs.
    pub fn of(probe: &Probe, container: &Container) -> Self {
        if let Some(exec) = &probe.exec {
            return Self::Exec {
                command: expand_static(exec.command.as_deref().unwrap_or_default(), container),
            };
        }
        if let Some(http) = &probe.http_get {
            return Self::HttpGet(HttpGet::of(http, container));
        }
        if let Some(tcp) = &probe.tcp_socket {
            return Self::TcpSocket {
                host: tcp.host.clone().filter(|h| !h.is_empty()),
                port: resolve_port(&tcp.port, container),
            };
        }
        if let Some(grpc) = &probe.grpc {
            return Self::Grpc {
                port: port_number(i64::from(grpc.port)),
                service: grpc.service.clone().unwrap_or_default(),
            };
        }
        Self::Missing
    }
}

/// A probe's port: a number, or the name of one of the container's ports (or, failing that,
/// a number written as a string), between 1 and 65535. The errors read as kubelet's.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(number) => port_number(i64::from(*number)),
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| i64::from(p.container_port));
            match named {
                Some(number) => port_number(number),
                None => match name.parse::<i64>() {
                    Ok(number) => port_number(number),
                    Err(_) => Err(format!("strconv.Atoi: parsing {name:?}: invalid syntax")),
                },
            }
        }
    }
}

fn port_number(number: i64) -> Result<u16, String> {
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// Expands `$(NAME)` in each argument with the container's env vars that have a literal
/// value (never `valueFrom`, which an exec probe cannot see), as kubelet does for exec probes.
/// `$$` is a literal `$`; a reference to an unknown name stays as written.
fn expand_static(command: &[String], container: &Container) -> Vec<String> {
    let env: HashMap<&str, &str> = container
        .env
        .iter()
        .flatten()
        .filter(|e| e.value_from.is_none())
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
        .collect();
    command.iter().map(|arg| expand(arg, &env)).collect()
}

fn expand(input: &str, env: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(') {
            match reference.find(')') {
                Some(end) => {
                    let name = &reference[..end];
                    match env.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &reference[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = reference;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::{ContainerPort, EnvVar, ExecAction};

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            env: Some(vec![EnvVar {
                name: "FILE".into(),
                value: Some("/tmp/healthy".into()),
                ..EnvVar::default()
            }]),
            ..Container::default()
        }
    }

    #[test]
    fn an_empty_probe_gets_kubelets_defaults() {
        let timing = ProbeTiming::of(ProbeKind::Readiness, &Probe::default());
        assert_eq!(timing.initial_delay_seconds, 0);
        assert_eq!(timing.period, Duration::from_secs(10));
        assert_eq!(timing.timeout, Duration::from_secs(1));
        assert_eq!(timing.success_threshold, 1);
        assert_eq!(timing.failure_threshold, 3);
    }

    #[test]
    fn liveness_and_startup_succeed_after_one_success() {
        let probe = Probe {
            success_threshold: Some(3),
            ..Probe::default()
        };
        assert_eq!(
            ProbeTiming::of(ProbeKind::Readiness, &probe).success_threshold,
            3
        );
        assert_eq!(
            ProbeTiming::of(ProbeKind::Liveness, &probe).success_threshold,
            1
        );
        assert_eq!(
            ProbeTiming::of(ProbeKind::Startup, &probe).success_threshold,
            1
        );
    }

    #[test]
    fn ports_resolve_by_number_name_or_numeric_string() {
        let c = container();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Ok(81));
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &c),
            Err("strconv.Atoi: parsing \"grpc\": invalid syntax".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &c),
            Err("invalid port number: 70000".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &c),
            Err("invalid port number: 0".into())
        );
    }

    #[test]
    fn exec_commands_expand_literal_env_references() {
        let probe = Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "cat".into(),
                    "$(FILE)".into(),
                    "$(UNSET)".into(),
                    "$$(FILE)".into(),
                    "cost $5".into(),
                ]),
            }),
            ..Probe::default()
        };
        assert_eq!(
            ProbeAction::of(&probe, &container()),
            ProbeAction::Exec {
                command: vec![
                    "cat".into(),
                    "/tmp/healthy".into(),
                    "$(UNSET)".into(),
                    "$(FILE)".into(),
                    "cost $5".into(),
                ]
            }
        );
    }

    #[test]
    fn a_probe_without_a_handler_is_missing() {
        assert_eq!(
            ProbeAction::of(&Probe::default(), &container()),
            ProbeAction::Missing
        );
    }
}
