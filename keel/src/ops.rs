//! Operator commands: `keel member …` over the etcd Cluster API of a running cluster, and
//! `keel snapshot restore`, which turns a backup into the data dir of a new member.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keel_proto::etcdserverpb::cluster_client::ClusterClient;
use keel_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest,
};
use tonic::transport::{Channel, Endpoint};

#[derive(Args, Debug)]
pub struct MemberArgs {
    /// Client URLs of members to talk to; the first that answers is used.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// CA the members' certificates chain to, for https:// endpoints (etcdctl's flag; a
    /// control-plane master's is <data-dir>/pki/store/ca.crt).
    #[arg(long, requires_all = ["cert", "key"])]
    cacert: Option<std::path::PathBuf>,
    /// Client certificate for https:// endpoints (<data-dir>/pki/store/client.crt).
    #[arg(long, requires = "cacert")]
    cert: Option<std::path::PathBuf>,
    /// Key of --cert (<data-dir>/pki/store/client.key).
    #[arg(long, requires = "cacert")]
    key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: MemberCommand,
}

#[derive(Subcommand, Debug)]
enum MemberCommand {
    /// List the members: ID, name, peer URLs, client URLs, learner or voter.
    List,
    /// Add a member by its peer URLs; start it afterwards with --initial-cluster-state=existing.
    Add {
        /// Comma-separated peer URLs of the new member.
        #[arg(long, value_delimiter = ',', required = true)]
        peer_urls: Vec<String>,
        /// Add it as a learner (no vote until promoted).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a member by its hex ID.
    Remove { id: String },
    /// Promote a learner that has caught up to a voter.
    Promote { id: String },
    /// Change a member's peer URLs.
    Update {
        id: String,
        #[arg(long, value_delimiter = ',', required = true)]
        peer_urls: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Write a backup (from `etcdctl snapshot save`) into a new data dir. Start a new cluster on
    /// it with `keel server --initial-cluster-state=new`; every member restores the same file.
    Restore {
        file: PathBuf,
        /// The data dir to create; it must not exist or be empty.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn parse_id(id: &str) -> anyhow::Result<u64> {
    u64::from_str_radix(id, 16).with_context(|| format!("bad member ID {id:?} (hex expected)"))
}

async fn connect(args: &MemberArgs) -> anyhow::Result<ClusterClient<Channel>> {
    if let (Some(ca), Some(cert), Some(key)) = (&args.cacert, &args.cert, &args.key) {
        let tls = keel_store::tls::client_config(&keel_store::config::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            trusted_ca: Some(ca.clone()),
            client_cert_auth: false,
        })?;
        // Lazy TLS channels: the first that answers a call is used.
        let mut last = None;
        for url in &args.endpoints {
            let mut client = ClusterClient::new(keel_store::tls::channel(url, Some(tls.clone()))?);
            match client.member_list(MemberListRequest::default()).await {
                Ok(_) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        return match last {
            Some(e) => Err(e).context("no endpoint answered"),
            None => bail!("no endpoints given"),
        };
    }
    let endpoints = &args.endpoints;
    let mut last = None;
    for url in endpoints {
        let endpoint = Endpoint::from_shared(url.clone())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(15));
        match endpoint.connect().await {
            Ok(ch) => return Ok(ClusterClient::new(ch)),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e).context("no endpoint answered"),
        None => bail!("no endpoints given"),
    }
}

fn print_members(members: &[Member]) {
    for m in members {
        println!(
            "{:x}, {}, {}, {}, {}",
            m.id,
            if m.name.is_empty() {
                "unstarted"
            } else {
                &m.name
            },
            m.peer_ur_ls.join(","),
            m.client_ur_ls.join(","),
            if m.is_learner { "learner" } else { "voter" }
        );
    }
}

pub async fn member(args: MemberArgs) -> anyhow::Result<()> {
    let mut client = connect(&args).await?;
    let members = match args.command {
        MemberCommand::List => {
            client
                .member_list(MemberListRequest::default())
                .await?
                .into_inner()
                .members
        }
        MemberCommand::Add { peer_urls, learner } => {
            let resp = client
                .member_add(MemberAddRequest {
                    peer_ur_ls: peer_urls,
                    is_learner: learner,
                })
                .await?
                .into_inner();
            if let Some(m) = &resp.member {
                println!("added member {:x}", m.id);
            }
            resp.members
        }
        MemberCommand::Remove { id } => {
            let id = parse_id(&id)?;
            let resp = client.member_remove(MemberRemoveRequest { id }).await?;
            println!("removed member {id:x}");
            resp.into_inner().members
        }
        MemberCommand::Promote { id } => {
            let id = parse_id(&id)?;
            let resp = client.member_promote(MemberPromoteRequest { id }).await?;
            println!("promoted member {id:x}");
            resp.into_inner().members
        }
        MemberCommand::Update { id, peer_urls } => {
            let id = parse_id(&id)?;
            let resp = client
                .member_update(MemberUpdateRequest {
                    id,
                    peer_ur_ls: peer_urls,
                })
                .await?;
            println!("updated member {id:x}");
            resp.into_inner().members
        }
    };
    print_members(&members);
    Ok(())
}

pub fn snapshot(args: SnapshotArgs) -> anyhow::Result<()> {
    match args.command {
        SnapshotCommand::Restore { file, data_dir } => {
            let done = keel_store::backup::restore(&file, &data_dir)
                .with_context(|| format!("restoring {}", file.display()))?;
            println!(
                "restored {} at revision {} into {} ({} records)",
                file.display(),
                done.revision,
                data_dir.display(),
                done.rows
            );
            Ok(())
        }
    }
}
