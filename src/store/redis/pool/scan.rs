//! Calls over every shard: a call per master, and `SCAN` over each master in turn.

use super::*;

impl RedisPool {
    /// `call` for each shard of a tenant's agent states and sessions (`Keys::shards`: 16 on a
    /// Cluster, 1 on one server), all at once; the answers in shard order.
    pub async fn per_shard<T, F, Fut>(&self, call: F) -> Result<Vec<T>, StoreError>
    where
        F: Fn(u16) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        futures_util::future::try_join_all((0..self.keys.shards()).map(call)).await
    }

    /// One `SCAN` page (cursor 0 starts) of the keys matching `pattern`, all of which share
    /// `slot_key`'s hash tag: on a Cluster, on the master that holds that slot.
    pub async fn scan_slot(
        &self,
        slot_key: &str,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let route = Route::with_key(slot_key, SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        self.routed("SCAN", &scan, routing).await
    }

    /// One `SCAN` page of every key matching `pattern`, whatever its slot. The cursor is
    /// SCAN's on a single server; on a Cluster, `<master>:<cursor>` over the masters in
    /// address order, one after the other (a resharding while a scan runs may repeat or miss
    /// keys, as a rehash may with SCAN).
    pub async fn scan_all(
        &self,
        cursor: Option<&str>,
        pattern: &str,
        count: usize,
    ) -> Result<(Option<String>, Vec<String>), StoreError> {
        let mut scan = redis::cmd("SCAN");
        let more = |next: &str| (next != "0").then(|| next.to_string());
        if !self.is_cluster() {
            scan.arg(cursor.unwrap_or("0"))
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count);
            let (next, keys): (String, Vec<String>) = self.query(&scan).await?;
            return Ok((more(&next), keys));
        }
        let bad = || StoreError::Internal("a scan cursor this service did not return".into());
        let (node, at) = match cursor {
            None => (0, "0"),
            Some(c) => {
                let (node, at) = c.split_once(':').ok_or_else(bad)?;
                (node.parse::<usize>().map_err(|_| bad())?, at)
            }
        };
        let masters = self.masters().await?;
        let Some((host, port)) = masters.get(node) else {
            return Ok((None, Vec::new()));
        };
        scan.arg(at)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port: *port,
        });
        let (next, keys): (String, Vec<String>) = self.routed("SCAN", &scan, routing).await?;
        let next = match more(&next) {
            Some(at) => Some(format!("{node}:{at}")),
            None if node + 1 < masters.len() => Some(format!("{}:0", node + 1)),
            None => None,
        };
        Ok((next, keys))
    }

    /// A Cluster's masters as `(host, port)`, in address order, from `CLUSTER SLOTS`.
    pub(super) async fn masters(&self) -> Result<Vec<(String, u16)>, StoreError> {
        let slots: Vec<Vec<redis::Value>> = self.query(redis::cmd("CLUSTER").arg("SLOTS")).await?;
        let mut masters: Vec<(String, u16)> = slots
            .into_iter()
            .filter_map(|range| {
                // [start, end, [host, port, id, ...], replicas...]
                let node: Vec<redis::Value> =
                    redis::from_redis_value(range.get(2)?.clone()).ok()?;
                let host = redis::from_redis_value(node.first()?.clone()).ok()?;
                let port = redis::from_redis_value(node.get(1)?.clone()).ok()?;
                Some((host, port))
            })
            .collect();
        masters.sort();
        masters.dedup();
        Ok(masters)
    }
}
