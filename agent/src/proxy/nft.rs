//! Applies a ruleset with the `nft` command, one document per call (`nft -f -`): nftables
//! applies a document as one transaction, so a failed sync changes nothing.

use super::tool::Tools;

/// Runs `nft` in the agent's own network namespace (the node's), or inside another
/// (`ip netns exec <name> nft`).
#[derive(Debug, Clone, Default)]
pub struct Nft {
    tools: Tools,
}

impl Nft {
    /// `nft` run inside the named network namespace.
    pub fn in_namespace(namespace: &str) -> Self {
        Nft {
            tools: Tools::in_namespace(namespace),
        }
    }

    /// Whether `nft` can be run here.
    pub async fn available(&self) -> bool {
        self.tools.available("nft").await
    }

    /// Applies `document` in one transaction; the error carries what nft printed.
    pub async fn apply(&self, document: &str) -> Result<(), String> {
        self.tools
            .run("nft", &["-f", "-"], Some(document))
            .await
            .map(drop)
    }
}
