//! ServiceAccount tokens on a default `keel server`, as a service outside the cluster would use
//! them: issued by `kubectl create token`, signed with ES256 by a key the issuer discovery
//! endpoints publish (so a verifier needs nothing secret), accepted only for the API server's
//! audiences, and only while the pod a token is bound to exists.

use std::process::{Command, Stdio};

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};
use serde_json::Value;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// GET `path` on the cluster's HTTPS port with `token` (none if empty): the status code and
/// body.
fn get(cluster: &Cluster, token: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut curl = Command::new("curl");
    curl.args(["--silent", "--show-error", "--http1.1", "--max-time", "30"])
        .arg("--cacert")
        .arg(cluster.ca_file()?);
    if !token.is_empty() {
        curl.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    let out = curl
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}{path}", cluster.members[0].rest_url()))
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').context("no status code")?;
    Ok((code.trim().parse()?, body.to_string()))
}

fn part(token: &str, i: usize) -> anyhow::Result<Value> {
    let piece = token.split('.').nth(i).context("not a JWT")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(piece)?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_es256_verifiable_from_the_published_keys_and_end_with_their_pod(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    k.ok(&["create", "serviceaccount", "robot"]);
    let token = k.ok(&["create", "token", "robot"]).trim().to_string();
    let header = part(&token, 0)?;
    assert_eq!(header["alg"], "ES256", "{header}");
    let claims = part(&token, 1)?;
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], serde_json::json!([ISSUER]));
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");

    // Issuer discovery, readable by service accounts.
    let (code, body) = get(&cluster, &token, "/.well-known/openid-configuration")?;
    assert_eq!(code, 200, "{body}");
    let config: Value = serde_json::from_str(&body)?;
    assert_eq!(config["issuer"], ISSUER);
    assert_eq!(config["jwks_uri"], format!("{ISSUER}/openid/v1/jwks"));
    let (code, body) = get(&cluster, &token, "/openid/v1/jwks")?;
    assert_eq!(code, 200, "{body}");
    let jwks: Value = serde_json::from_str(&body)?;
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == header["kid"]))
        .context("the token's key is published")?;
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    // Verify as an outside service would: with the published public key alone.
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(key["x"].as_str().context("x")?)?);
    point.extend(URL_SAFE_NO_PAD.decode(key["y"].as_str().context("y")?)?);
    let (signed, signature) = token.rsplit_once('.').context("three parts")?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(signature)?)
        .map_err(|_| anyhow::anyhow!("the published key does not verify the token"))?;
    let mut tampered = token.clone();
    tampered.replace_range(token.len() - 4.., "AAAA");
    let (code, _) = get(&cluster, &tampered, "/api")?;
    assert_eq!(code, 401, "a token with a broken signature");

    // The token works for the API; one for another audience does not.
    let (code, body) = get(&cluster, &token, "/api")?;
    assert_eq!(code, 200, "{body}");
    let vault = k.ok(&["create", "token", "robot", "--audience=vault"]);
    assert_eq!(part(vault.trim(), 1)?["aud"], serde_json::json!(["vault"]));
    let (code, _) = get(&cluster, vault.trim(), "/api")?;
    assert_eq!(code, 401);
    // Anonymous callers see no keys.
    let (code, _) = get(&cluster, "", "/openid/v1/jwks")?;
    assert_eq!(code, 403);

    // A token bound to a pod ends with it.
    k.ok(&["run", "holder", "--image=busybox", "--restart=Never"]);
    let uid = k.ok(&["get", "pod", "holder", "-o", "jsonpath={.metadata.uid}"]);
    let bound = k.ok(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind=Pod",
        "--bound-object-name=holder",
        &format!("--bound-object-uid={uid}"),
    ]);
    let bound = bound.trim();
    let private = &part(bound, 1)?["kubernetes.io"];
    assert_eq!(private["pod"]["name"], "holder");
    assert_eq!(private["pod"]["uid"], uid.as_str());
    let (code, body) = get(&cluster, bound, "/api")?;
    assert_eq!(code, 200, "{body}");
    let wrong = k.fails(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind=Pod",
        "--bound-object-name=holder",
        "--bound-object-uid=00000000-0000-0000-0000-000000000000",
    ]);
    assert!(
        wrong.contains("does not match the UID in record"),
        "{wrong}"
    );
    k.ok(&["delete", "pod", "holder", "--grace-period=0", "--force"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, _) = get(&cluster, bound, "/api")?;
        if code == 401 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the bound token still works after its pod went"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The unbound token is unaffected.
    assert_eq!(get(&cluster, &token, "/api")?.0, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_audiences_decide_which_tokens_authenticate() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(
        Flavor::Keel,
        1,
        &["--api-audiences=https://keel.example,api".to_string()],
    )
    .await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    k.ok(&["create", "serviceaccount", "robot"]);
    // Without audiences, a token is for the API server's.
    let default = k.ok(&["create", "token", "robot"]);
    assert_eq!(
        part(default.trim(), 1)?["aud"],
        serde_json::json!(["https://keel.example", "api"])
    );
    assert_eq!(get(&cluster, default.trim(), "/api")?.0, 200);
    let second = k.ok(&["create", "token", "robot", "--audience=api"]);
    assert_eq!(get(&cluster, second.trim(), "/api")?.0, 200);
    let issuer = k.ok(&["create", "token", "robot", &format!("--audience={ISSUER}")]);
    assert_eq!(get(&cluster, issuer.trim(), "/api")?.0, 401);
    Ok(())
}
