//! A bench for the proxy's rules under real traffic, for tests and `keel bench proxy`: a
//! "node" network namespace joined by veth to a "server" namespace running busybox httpd.
//! Rules applied in the node namespace (with [`Nft::in_namespace`](super::nft::Nft)) then
//! see the node's own connections (output hook) and the server's connections to the node
//! (prerouting). Everything goes when the bed is dropped. Needs root, `ip` and busybox.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The node's address on the veth.
pub const NODE_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
/// The server's address and port.
pub const SERVER_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
pub const SERVER_PORT: u16 = 8080;

/// The two namespaces and the server.
pub struct Bed {
    pub node: String,
    pub server: String,
    http: Option<Child>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Bed {
    /// Creates the namespaces (named after `prefix` and this process), the veth pair and the
    /// routes: the node's default route and the server's route to cluster IPs go through the
    /// other side.
    pub fn create(prefix: &str) -> Result<Bed, String> {
        let tag = format!("{:x}", std::process::id() & 0xffff);
        let bed = Bed {
            node: format!("{prefix}-node-{tag}"),
            server: format!("{prefix}-srv-{tag}"),
            http: None,
        };
        let (veth_node, veth_server) = (format!("{prefix}n{tag}"), format!("{prefix}s{tag}"));
        ip(&["netns", "add", &bed.node])?;
        ip(&["netns", "add", &bed.server])?;
        ip(&[
            "link",
            "add",
            &veth_node,
            "netns",
            &bed.node,
            "type",
            "veth",
            "peer",
            "name",
            &veth_server,
            "netns",
            &bed.server,
        ])?;
        for (ns, dev, addr) in [
            (&bed.node, &veth_node, NODE_ADDRESS),
            (&bed.server, &veth_server, SERVER_ADDRESS),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (node, server) = (NODE_ADDRESS.to_string(), SERVER_ADDRESS.to_string());
        ip(&[
            "-n",
            &bed.server,
            "route",
            "add",
            "10.96.0.0/12",
            "via",
            &node,
        ])?;
        ip(&["-n", &bed.node, "route", "add", "default", "via", &server])?;
        ip(&[
            "netns",
            "exec",
            &bed.node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        Ok(bed)
    }

    /// Serves the files of `dir` over HTTP on the server's address and port, and waits until
    /// the node can connect.
    pub fn serve(&mut self, dir: &Path) -> Result<(), String> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server, "busybox", "httpd", "-f"])
            .arg("-p")
            .arg(format!("{SERVER_ADDRESS}:{SERVER_PORT}"))
            .arg("-h")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting busybox httpd: {e}"))?;
        self.http = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let direct = SocketAddr::from((SERVER_ADDRESS, SERVER_PORT));
        while self.connect_times(direct, 1).is_err() {
            if Instant::now() > deadline {
                return Err("the HTTP server in the server namespace did not start".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Accepts and closes connections on the server's address at `port` from a thread in the
    /// server namespace, for as long as the process runs: a listener that keeps up, so connect
    /// times measure the path, not the server's accept queue.
    pub fn accept_on(&self, port: u16) -> Result<(), String> {
        let listener = self.listen_in_server(port)?;
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                drop(stream);
            }
        });
        Ok(())
    }

    /// Echoes back what each connection on the server's address at `port` sends, from a
    /// thread in the server namespace, for as long as the process runs.
    pub fn echo_on(&self, port: u16) -> Result<(), String> {
        let listener = self.listen_in_server(port)?;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut reader = match stream.try_clone() {
                        Ok(r) => r,
                        Err(_) => return,
                    };
                    let _ = std::io::copy(&mut reader, &mut stream);
                });
            }
        });
        Ok(())
    }

    /// A TCP connection to `target` opened from inside the node namespace, kept open.
    pub fn connect_from_node(&self, target: SocketAddr) -> Result<TcpStream, String> {
        let path = format!("/run/netns/{}", self.node);
        std::thread::spawn(move || -> Result<TcpStream, String> {
            enter(&path)?;
            TcpStream::connect_timeout(&target, Duration::from_secs(2))
                .map_err(|e| format!("connecting to {target}: {e}"))
        })
        .join()
        .map_err(|_| "the connecting thread panicked".to_string())?
    }

    fn listen_in_server(&self, port: u16) -> Result<std::net::TcpListener, String> {
        let path = format!("/run/netns/{}", self.server);
        std::thread::spawn(move || -> Result<std::net::TcpListener, String> {
            enter(&path)?;
            std::net::TcpListener::bind((SERVER_ADDRESS, port))
                .map_err(|e| format!("listening on {SERVER_ADDRESS}:{port}: {e}"))
        })
        .join()
        .map_err(|_| "the listening thread panicked".to_string())?
    }

    /// `count` TCP connect times to `target` from inside the node namespace (a thread of its
    /// own moves there); the first failure ends it.
    pub fn connect_times(&self, target: SocketAddr, count: usize) -> Result<Vec<Duration>, String> {
        let path = format!("/run/netns/{}", self.node);
        std::thread::spawn(move || -> Result<Vec<Duration>, String> {
            enter(&path)?;
            let mut times = Vec::with_capacity(count);
            for _ in 0..count {
                let started = Instant::now();
                let stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                    .map_err(|e| format!("connecting to {target}: {e}"))?;
                times.push(started.elapsed());
                drop(stream);
            }
            Ok(times)
        })
        .join()
        .map_err(|_| "the connecting thread panicked".to_string())?
    }

    /// `curl` from inside namespace `ns` (the node's or the server's): the body, or curl's
    /// exit code.
    pub fn curl(&self, ns: &str, url: &str) -> Result<String, i32> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "5", url])
            .output()
            .map_err(|_| -1)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(out.status.code().unwrap_or(-1))
        }
    }

    /// Runs `program args` inside namespace `ns` with `input` on its stdin.
    pub fn run_in(
        &self,
        ns: &str,
        program: &str,
        args: &[&str],
        input: &str,
    ) -> Result<Duration, String> {
        use std::io::Write;
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {program}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| format!("writing to {program}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {program}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{program}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(started.elapsed())
    }
}

/// Moves the calling thread into the network namespace bound at `path`. A socket made there
/// stays there, whichever thread uses it later.
fn enter(path: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| format!("entering the network namespace {path}: {e}"))
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut child) = self.http.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = ip(&["netns", "del", &self.node]);
        let _ = ip(&["netns", "del", &self.server]);
    }
}
