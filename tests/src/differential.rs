//! The etcdctl differential harness: runs etcdctl steps against a cluster, normalises their
//! output (IDs, terms, timings, URLs) so runs on etcd and keel compare field by field, and lists
//! where two runs differ.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::etcdctl::{self, Output};
use crate::{Cluster, Flavor};

/// How a step's stdout is turned into something comparable across clusters.
#[derive(Debug, Clone, Copy)]
pub enum Norm {
    /// Text lines, in order.
    Lines,
    /// Text lines, order-insensitive (the server's order is unspecified, e.g. `lease list`).
    SortedLines,
    /// One JSON document.
    Json,
    /// A stream of JSON watch responses: events are flattened (how the server batches them is
    /// its business), response envelopes are kept once each in order of first appearance.
    WatchJson,
    MemberList,
    MemberListJson,
    EndpointStatus,
    EndpointStatusJson,
    EndpointHealth,
    EndpointHealthJson,
    /// `endpoint hashkv -w json`: the hash is implementation-specific (etcd hashes its bbolt
    /// encoding); what must hold is that all members agree.
    HashKvJson,
}

/// What one step produced after normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub step: String,
    pub command: String,
    /// Exit status; "killed" when a long-running command (watch) was stopped by the test.
    pub status: String,
    pub stdout: Value,
    pub stderr: Vec<String>,
}

/// Per-run state: the cluster's URLs, the leases granted so far (mapped to LEASE1, LEASE2… in
/// order of grant), revision marks, and IDs seen in headers for the final consistency step.
pub struct Run<'a> {
    cluster: &'a Cluster,
    leases: Vec<i64>,
    marks: BTreeMap<&'static str, i64>,
    without_scheme: bool,
    cluster_ids: BTreeSet<u64>,
    header_member_ids: BTreeSet<u64>,
    listed_member_ids: BTreeSet<u64>,
    pub outcomes: Vec<Outcome>,
}

pub fn num(v: &Value) -> Option<i128> {
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
}

pub fn placeholder_if_positive(v: &Value, name: &str) -> Value {
    match num(v) {
        Some(n) if n > 0 => Value::String(format!("<{name}>")),
        _ => v.clone(),
    }
}

/// Sorts an array by each element's JSON text.
pub fn sort_array(v: &mut Value) {
    if let Value::Array(items) = v {
        items.sort_by_key(|item| item.to_string());
    }
}

/// `lease ... granted with TTL(300s), remaining(299s)...`: the remaining time depends on when the
/// command ran; it is replaced when it is within a minute below the granted TTL. Attached keys
/// come in the server's map order and are sorted.
pub fn normalise_ttl_line(line: &str) -> String {
    let mut line = line.to_string();
    let granted = line
        .split_once("TTL(")
        .and_then(|(_, rest)| rest.split_once("s)"))
        .and_then(|(n, _)| n.parse::<i64>().ok());
    if let (Some(granted), Some((before, rest))) = (granted, line.clone().split_once("remaining("))
    {
        if let Some((n, after)) = rest.split_once("s)") {
            if let Ok(remaining) = n.parse::<i64>() {
                if remaining > 0 && remaining <= granted && remaining > granted - 60 {
                    line = format!("{before}remaining(<ttl>s){after}");
                }
            }
        }
    }
    if let Some((before, rest)) = line.clone().split_once("attached keys([") {
        if let Some((keys, after)) = rest.split_once("])") {
            let mut keys: Vec<&str> = keys.split(' ').collect();
            keys.sort_unstable();
            line = format!("{before}attached keys([{}]){after}", keys.join(" "));
        }
    }
    line
}

/// `CLIENT0 is healthy: successfully committed proposal: took = 3.2ms`, in completion order:
/// durations replaced, lines sorted.
pub fn health_lines(lines: &[String]) -> Vec<String> {
    let mut lines: Vec<String> = lines
        .iter()
        .map(|l| match l.split_once("took = ") {
            Some((before, _)) => format!("{before}took = <duration>"),
            None => l.clone(),
        })
        .collect();
    lines.sort();
    lines
}

impl<'a> Run<'a> {
    pub fn new(cluster: &'a Cluster) -> Self {
        Run {
            cluster,
            leases: Vec::new(),
            marks: BTreeMap::new(),
            without_scheme: false,
            cluster_ids: BTreeSet::new(),
            header_member_ids: BTreeSet::new(),
            listed_member_ids: BTreeSet::new(),
            outcomes: Vec::new(),
        }
    }

    /// Fills in `{LEASEn}` (hex, as etcdctl takes it), `{REV:mark}` and `{NEXT:mark}` (the
    /// revision recorded by `mark`, and the one after it).
    pub fn expand(&self, arg: &str) -> Result<String> {
        let mut out = arg.to_string();
        for (i, id) in self.leases.iter().enumerate() {
            out = out.replace(&format!("{{LEASE{}}}", i + 1), &format!("{id:016x}"));
        }
        for (name, rev) in &self.marks {
            out = out.replace(&format!("{{REV:{name}}}"), &rev.to_string());
            out = out.replace(&format!("{{NEXT:{name}}}"), &(rev + 1).to_string());
        }
        if ["{LEASE", "{REV:", "{NEXT:"]
            .iter()
            .any(|p| out.contains(p))
        {
            bail!("unexpanded placeholder in {arg:?} (a lease grant or mark failed earlier)");
        }
        Ok(out)
    }

    /// Member URLs become CLIENTi / PEERi; lease IDs in hex become LEASEn.
    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (i, m) in self.cluster.members.iter().enumerate() {
            out = out.replace(&m.client_url(), &format!("CLIENT{i}"));
            out = out.replace(&m.peer_url(), &format!("PEER{i}"));
        }
        for (i, m) in self.cluster.members.iter().enumerate() {
            out = out.replace(
                &format!("127.0.0.1:{}", m.client_port),
                &format!("CLIENT{i}"),
            );
        }
        for (i, id) in self.leases.iter().enumerate() {
            out = out.replace(&format!("{id:016x}"), &format!("LEASE{}", i + 1));
        }
        out
    }

    /// Header IDs and terms become placeholders (and are remembered for the consistency step);
    /// lease IDs in decimal become LEASEn; remaining TTLs and attached keys as in
    /// `normalise_ttl_line`; `lease list` is sorted.
    pub fn json(&mut self, v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, val) in map {
                    let new = match k.as_str() {
                        "cluster_id" => {
                            if let Some(id) = val.as_u64() {
                                self.cluster_ids.insert(id);
                            }
                            placeholder_if_positive(val, "cluster_id")
                        }
                        "member_id" => {
                            if let Some(id) = val.as_u64() {
                                self.header_member_ids.insert(id);
                            }
                            placeholder_if_positive(val, "member_id")
                        }
                        "raft_term" => placeholder_if_positive(val, "raft_term"),
                        _ => self.json(val),
                    };
                    out.insert(k.clone(), new);
                }
                if let (Some(granted), Some(ttl)) = (
                    out.get("granted-ttl").and_then(num),
                    out.get("ttl").and_then(num),
                ) {
                    if ttl > 0 && ttl <= granted && ttl > granted - 60 {
                        out.insert("ttl".into(), json!("<remaining ttl>"));
                    }
                    if let Some(keys) = out.get_mut("keys") {
                        sort_array(keys);
                    }
                }
                if let Some(leases) = out.get_mut("leases") {
                    sort_array(leases);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(|item| self.json(item)).collect()),
            Value::Number(_) => {
                match num(v).and_then(|n| self.leases.iter().position(|&id| i128::from(id) == n)) {
                    Some(i) => Value::String(format!("LEASE{}", i + 1)),
                    None => v.clone(),
                }
            }
            _ => v.clone(),
        }
    }

    pub fn lines(&self, s: &str) -> Vec<String> {
        self.text(s).lines().map(str::to_string).collect()
    }

    pub fn parse_json(&mut self, stdout: &str) -> Value {
        match serde_json::from_str::<Value>(&self.text(stdout)) {
            Ok(v) => self.json(&v),
            Err(_) => json!({ "unparsed stdout": self.lines(stdout) }),
        }
    }

    pub fn normalise_stdout(&mut self, stdout: &str, norm: Norm) -> Value {
        match norm {
            Norm::Lines => json!(self
                .lines(stdout)
                .iter()
                .map(|l| normalise_ttl_line(l))
                .collect::<Vec<_>>()),
            Norm::SortedLines => {
                let mut lines = self.lines(stdout);
                lines.sort();
                json!(lines)
            }
            Norm::Json => self.parse_json(stdout),
            Norm::WatchJson => self.watch_json(stdout),
            Norm::MemberList => {
                // ID, status, name, peer URLs, client URLs, is learner
                let mut rows: Vec<String> = self
                    .lines(stdout)
                    .iter()
                    .map(|l| match l.split_once(", ") {
                        Some((_, rest)) => format!("<id>, {rest}"),
                        None => l.clone(),
                    })
                    .collect();
                rows.sort();
                json!(rows)
            }
            Norm::MemberListJson => {
                let mut v = self.parse_json(stdout);
                if let Some(Value::Array(members)) = v.get_mut("members") {
                    for m in members.iter_mut() {
                        if let Some(id) = m.get("ID").and_then(Value::as_u64) {
                            self.listed_member_ids.insert(id);
                        }
                        if let Some(id) = m.get_mut("ID") {
                            *id = placeholder_if_positive(id, "member id");
                        }
                    }
                    members
                        .sort_by_key(|m| m.get("name").map(Value::to_string).unwrap_or_default());
                }
                v
            }
            Norm::EndpointStatus => {
                // endpoint, ID, version, db size, is leader, is learner, raft term, raft index,
                // raft applied index, errors. Which endpoint leads differs; how many lead must not.
                let mut rows = Vec::new();
                let mut leaders = 0;
                for line in self.lines(stdout) {
                    let cols: Vec<&str> = line.split(", ").collect();
                    if cols.len() < 10 {
                        rows.push(json!({ "unparsed row": line }));
                        continue;
                    }
                    if cols[4] == "true" {
                        leaders += 1;
                    }
                    let positive = |s: &str, name: &str| match s.parse::<u64>() {
                        Ok(n) if n > 0 => format!("<{name}>"),
                        _ => s.to_string(),
                    };
                    rows.push(json!({
                        "endpoint": cols[0],
                        "id": if u64::from_str_radix(cols[1], 16).is_ok_and(|id| id > 0) { "<id>" } else { cols[1] },
                        "version": if cols[2].is_empty() { "" } else { "<version>" },
                        "db size": if cols[3].ends_with('B') { "<size>" } else { cols[3] },
                        "is learner": cols[5],
                        "raft term": positive(cols[6], "term"),
                        "raft index": positive(cols[7], "index"),
                        "raft applied index": positive(cols[8], "index"),
                        "errors": cols[9..].join(", "),
                    }));
                }
                rows.sort_by_key(Value::to_string);
                json!({ "rows": rows, "leaders": leaders })
            }
            Norm::EndpointStatusJson => self.endpoint_status_json(stdout),
            Norm::HashKvJson => {
                let mut v = self.parse_json(stdout);
                if let Value::Array(items) = &mut v {
                    let hashes: BTreeSet<String> = items
                        .iter()
                        .map(|i| {
                            i.pointer("/HashKV/hash")
                                .map(Value::to_string)
                                .unwrap_or_default()
                        })
                        .collect();
                    if hashes.len() == 1 {
                        for item in items.iter_mut() {
                            if let Some(hash) = item.pointer_mut("/HashKV/hash") {
                                *hash = json!("<hash, same on all>");
                            }
                        }
                    }
                }
                sort_array(&mut v);
                v
            }
            Norm::EndpointHealth => json!(health_lines(&self.lines(stdout))),
            Norm::EndpointHealthJson => {
                let mut v = self.parse_json(stdout);
                if let Value::Array(items) = &mut v {
                    for item in items.iter_mut() {
                        if let Some(took) = item.get_mut("took") {
                            if took.as_str().is_some_and(|s| !s.is_empty()) {
                                *took = json!("<duration>");
                            }
                        }
                    }
                }
                sort_array(&mut v);
                v
            }
        }
    }

    pub fn watch_json(&mut self, stdout: &str) -> Value {
        let text = self.text(stdout);
        let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        let mut envelopes: Vec<Value> = Vec::new();
        let mut events = Vec::new();
        let mut consumed = 0;
        while let Some(Ok(resp)) = stream.next() {
            consumed = stream.byte_offset();
            let mut resp = self.json(&resp);
            if let Some(Value::Array(evs)) = resp.as_object_mut().and_then(|o| o.remove("Events")) {
                events.extend(evs);
            }
            if !envelopes.contains(&resp) {
                envelopes.push(resp);
            }
        }
        let trailing: Vec<&str> = text[consumed..]
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        json!({ "responses (without events)": envelopes, "events": events, "trailing text": trailing })
    }

    /// Values that legitimately differ (versions, sizes, raft indexes, which member leads) are
    /// replaced after checking they are sane: one leader agreed by all, and it is one of them.
    pub fn endpoint_status_json(&mut self, stdout: &str) -> Value {
        let raw: Value = match serde_json::from_str(&self.text(stdout)) {
            Ok(v) => v,
            Err(_) => return json!({ "unparsed stdout": self.lines(stdout) }),
        };
        let Some(items) = raw.as_array() else {
            return self.json(&raw);
        };
        let leaders: BTreeSet<String> = items
            .iter()
            .map(|i| {
                i.pointer("/Status/leader")
                    .map(Value::to_string)
                    .unwrap_or_default()
            })
            .collect();
        let own_ids: BTreeSet<String> = items
            .iter()
            .map(|i| {
                i.pointer("/Status/header/member_id")
                    .map(Value::to_string)
                    .unwrap_or_default()
            })
            .collect();
        let leader_ok = leaders.len() == 1 && leaders.iter().all(|l| own_ids.contains(l));
        let terms: BTreeSet<String> = items
            .iter()
            .map(|i| {
                i.pointer("/Status/raftTerm")
                    .map(Value::to_string)
                    .unwrap_or_default()
            })
            .collect();
        let mut out = Vec::new();
        for item in items {
            let mut item = self.json(item);
            if let Some(Value::Object(status)) = item.get_mut("Status") {
                for (k, v) in status.iter_mut() {
                    *v = match k.as_str() {
                        "version" if v.as_str().is_some_and(|s| !s.is_empty()) => {
                            json!("<version>")
                        }
                        "dbSize" | "dbSizeInUse" => placeholder_if_positive(v, "bytes"),
                        "raftIndex" | "raftAppliedIndex" => placeholder_if_positive(v, "index"),
                        "raftTerm" if terms.len() == 1 => {
                            placeholder_if_positive(v, "term, same on all")
                        }
                        "leader" if leader_ok => json!("<leader, same on all, one of them>"),
                        _ => v.clone(),
                    };
                }
            }
            out.push(item);
        }
        let mut out = Value::Array(out);
        sort_array(&mut out);
        out
    }

    /// JSON log lines etcdctl's client prints are reduced to their error text (which carries the
    /// gRPC code); other lines are kept. Duplicates (retries) are dropped.
    pub fn normalise_stderr(&self, stderr: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in self.text(stderr).lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let kept = match serde_json::from_str::<Value>(line) {
                Ok(v) if v.get("level").is_some() => {
                    format!(
                        "log: {}",
                        v.get("error")
                            .or_else(|| v.get("msg"))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    )
                }
                _ => line.to_string(),
            };
            if !out.contains(&kept) {
                out.push(kept);
            }
        }
        out
    }

    pub fn record(
        &mut self,
        step: &str,
        args: &[String],
        stdin: Option<&str>,
        out: &Output,
        killed: bool,
        norm: Norm,
    ) {
        let mut command = self.text(&format!("etcdctl {}", args.join(" ")));
        if let Some(input) = stdin {
            command.push_str(&format!(" <<< {input:?}"));
        }
        let stdout = self.normalise_stdout(&out.stdout, norm);
        let outcome = Outcome {
            step: step.to_string(),
            command,
            status: if killed {
                "killed".to_string()
            } else {
                out.status.to_string()
            },
            stdout,
            stderr: match norm {
                // etcdctl prints one health line per endpoint to stderr, in completion order.
                Norm::EndpointHealth => health_lines(&self.normalise_stderr(&out.stderr)),
                _ => self.normalise_stderr(&out.stderr),
            },
        };
        self.outcomes.push(outcome);
    }

    pub fn step_with_stdin(
        &mut self,
        step: &str,
        args: &[&str],
        stdin: Option<&str>,
        norm: Norm,
    ) -> Result<Output> {
        let args: Vec<String> = args.iter().map(|a| self.expand(a)).collect::<Result<_>>()?;
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = etcdctl::etcdctl(&self.endpoints(), &arg_refs, stdin)?;
        self.record(step, &args, stdin, &out, false, norm);
        Ok(out)
    }

    /// The cluster's client URLs, or `host:port` without the scheme for `step_without_scheme`.
    pub fn endpoints(&self) -> Vec<String> {
        let endpoints = self.cluster.endpoints();
        if !self.without_scheme {
            return endpoints;
        }
        endpoints
            .iter()
            .map(|e| e.trim_start_matches("http://").to_string())
            .collect()
    }

    /// A step with `--endpoints=127.0.0.1:port,...`. etcdctl's per-endpoint maintenance calls
    /// (endpoint status, hashkv, defrag) then send `:authority` without the scheme, which tells a
    /// server that rejects `http://...` as authority apart from one whose Status is wrong.
    pub fn step_without_scheme(&mut self, step: &str, args: &[&str], norm: Norm) -> Result<Output> {
        self.without_scheme = true;
        let out = self.step(step, args, norm);
        self.without_scheme = false;
        out
    }

    pub fn step(&mut self, step: &str, args: &[&str], norm: Norm) -> Result<Output> {
        self.step_with_stdin(step, args, None, norm)
    }

    pub fn txn(&mut self, step: &str, script: &str, json_out: bool) -> Result<Output> {
        let (args, norm): (&[&str], _) = if json_out {
            (&["txn", "-w", "json"], Norm::Json)
        } else {
            (&["txn"], Norm::Lines)
        };
        self.step_with_stdin(step, args, Some(script), norm)
    }

    /// `lease grant`, remembering the new lease as the next LEASEn before normalising.
    pub fn grant(&mut self, step: &str, ttl: &str, json_out: bool) -> Result<()> {
        let mut args = vec!["lease".to_string(), "grant".to_string(), ttl.to_string()];
        if json_out {
            args.extend(["-w".to_string(), "json".to_string()]);
        }
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = etcdctl::etcdctl(&self.cluster.endpoints(), &arg_refs, None)?;
        let id = if json_out {
            serde_json::from_str::<Value>(&out.stdout)
                .ok()
                .and_then(|v| v.get("ID").and_then(Value::as_i64))
        } else {
            // "lease 694d7a1f4b2b3c0a granted with TTL(600s)"
            out.stdout
                .split_whitespace()
                .nth(1)
                .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        };
        if let Some(id) = id {
            self.leases.push(id);
        }
        self.record(
            step,
            &args,
            None,
            &out,
            false,
            if json_out { Norm::Json } else { Norm::Lines },
        );
        Ok(())
    }

    /// Records the current revision under `name` (via a compared `get -w json`).
    pub fn mark(&mut self, name: &'static str) -> Result<()> {
        let out = self.step(
            &format!("revision mark {name}"),
            &["get", "__ready", "-w", "json"],
            Norm::Json,
        )?;
        let rev = serde_json::from_str::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.pointer("/header/revision").and_then(Value::as_i64))
            .with_context(|| format!("no header.revision in {out:?}"))?;
        self.marks.insert(name, rev);
        Ok(())
    }

    /// Runs a watch for `limit`; if `during` is given, those etcdctl commands run (not recorded
    /// as steps of their own) once the watch had time to catch up on history.
    pub fn watch(
        &mut self,
        step: &str,
        args: &[&str],
        during: &[&[&str]],
        limit: Duration,
        norm: Norm,
    ) -> Result<()> {
        let args: Vec<String> = args.iter().map(|a| self.expand(a)).collect::<Result<_>>()?;
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let running = etcdctl::spawn(&self.cluster.endpoints(), &arg_refs)?;
        let started = std::time::Instant::now();
        if !during.is_empty() {
            std::thread::sleep(limit / 2);
            for cmd in during {
                let out = etcdctl::etcdctl(&self.cluster.endpoints(), cmd, None)?;
                if out.status != 0 {
                    bail!("{step}: side command {cmd:?} failed: {out:?}");
                }
            }
        }
        let (out, killed) = running.finish_within(limit.saturating_sub(started.elapsed()))?;
        self.record(step, &args, None, &out, killed, norm);
        Ok(())
    }

    /// Header IDs are replaced by placeholders; this step checks what they replaced: one cluster
    /// ID throughout, and every member ID in a header is a listed member.
    pub fn header_consistency(&mut self) {
        let stdout = json!({
            "distinct cluster ids in headers": self.cluster_ids.len(),
            "listed members": self.listed_member_ids.len(),
            "header member ids all listed": self.header_member_ids.is_subset(&self.listed_member_ids),
            "header member ids never zero": !self.header_member_ids.contains(&0),
        });
        self.outcomes.push(Outcome {
            step: "header IDs are consistent".into(),
            command: "(derived from all JSON headers above)".into(),
            status: "0".into(),
            stdout,
            stderr: Vec::new(),
        });
    }
}

/// With KEEL_DIFF_DUMP set, prints a run's normalised outcomes, one step per paragraph.
pub fn dump(flavor: &str, outcomes: &[Outcome]) {
    for (i, o) in outcomes.iter().enumerate() {
        eprintln!(
            "[{flavor} {i}] {} | {} | status {}\n  stdout: {}\n  stderr: {:?}",
            o.step, o.command, o.status, o.stdout, o.stderr
        );
    }
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Where two JSON values differ, as `path: etcd value | keel value` lines ("-" = absent).
pub fn json_diff(path: &str, etcd: &Value, keel: &Value, out: &mut Vec<String>) {
    match (etcd, keel) {
        (Value::Object(e), Value::Object(k)) => {
            let keys: BTreeSet<&String> = e.keys().chain(k.keys()).collect();
            for key in keys {
                let sub = format!("{path}/{key}");
                match (e.get(key), k.get(key)) {
                    (Some(ev), Some(kv)) => json_diff(&sub, ev, kv, out),
                    (ev, kv) => out.push(format!(
                        "    {sub}: etcd {} | keel {}",
                        ev.map_or("-".to_string(), Value::to_string),
                        kv.map_or("-".to_string(), Value::to_string)
                    )),
                }
            }
        }
        (Value::Array(e), Value::Array(k)) if e.len() == k.len() => {
            for (i, (ev, kv)) in e.iter().zip(k).enumerate() {
                json_diff(&format!("{path}/{i}"), ev, kv, out);
            }
        }
        _ if etcd != keel => out.push(format!(
            "    {}: etcd {etcd} | keel {keel}",
            if path.is_empty() { "/" } else { path }
        )),
        _ => {}
    }
}

/// Every step where keel differs from etcd, with both outputs.
pub fn differences(etcd: &[Outcome], keel: &[Outcome]) -> Vec<String> {
    let mut diffs = Vec::new();
    for (i, e) in etcd.iter().enumerate() {
        let Some(k) = keel.get(i) else {
            diffs.push(format!(
                "step {i} {:?}: keel's run stopped before it",
                e.step
            ));
            continue;
        };
        assert_eq!(e.step, k.step, "both runs execute the same script");
        if e == k {
            continue;
        }
        let mut msg = format!("step {i} {:?}: {}\n", e.step, e.command);
        if e.status != k.status {
            msg.push_str(&format!(
                "  exit status: etcd {} vs keel {}\n",
                e.status, k.status
            ));
        }
        if e.stdout != k.stdout {
            let mut paths = Vec::new();
            json_diff("", &e.stdout, &k.stdout, &mut paths);
            msg.push_str(&format!(
                "  stdout differs at:\n{}\n  stdout (etcd):\n{}\n  stdout (keel):\n{}\n",
                paths.join("\n"),
                pretty(&e.stdout),
                pretty(&k.stdout)
            ));
        }
        if e.stderr != k.stderr {
            msg.push_str(&format!(
                "  stderr (etcd): {:#?}\n  stderr (keel): {:#?}\n",
                e.stderr, k.stderr
            ));
        }
        diffs.push(msg);
    }
    for k in keel.iter().skip(etcd.len()) {
        diffs.push(format!("step {:?} only ran on keel", k.step));
    }
    diffs
}

/// Runs `script` on a fresh 3-member cluster of `flavor` and returns its outcomes, printing
/// them when `KEEL_DIFF_DUMP` is set.
pub async fn run_on(
    flavor: Flavor,
    script: fn(&Cluster) -> Result<Vec<Outcome>>,
) -> Result<Vec<Outcome>> {
    let cluster = Cluster::start(flavor, 3).await?;
    let outcomes = tokio::task::block_in_place(|| script(&cluster))
        .with_context(|| format!("{flavor:?} run"))?;
    drop(cluster);
    if std::env::var_os("KEEL_DIFF_DUMP").is_some() {
        dump(&format!("{flavor:?}"), &outcomes);
    }
    Ok(outcomes)
}
