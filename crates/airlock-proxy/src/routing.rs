//! Routes, their validation, and the smooth weighted round-robin that picks one per request.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::{ProxyError, VersionMetrics};

/// One backend the proxy may send requests to.
///
/// `name` identifies the version for metrics (unique and non-empty within a table);
/// `weight` is its share of requests relative to the other routes (0 = none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The version's name, e.g. `stable`, `baseline`, `canary`.
    pub name: String,
    /// Where the backend listens (plain HTTP/1.1).
    pub addr: SocketAddr,
    /// Relative share of requests.
    pub weight: u32,
}

/// Checks what [`crate::Proxy::set_routes`] promises to refuse.
pub(crate) fn validate(routes: &[Route]) -> Result<(), ProxyError> {
    let mut names = BTreeSet::new();
    for (index, route) in routes.iter().enumerate() {
        if route.name.is_empty() {
            return Err(ProxyError::EmptyRouteName { index });
        }
        if !names.insert(route.name.as_str()) {
            return Err(ProxyError::DuplicateRouteName {
                name: route.name.clone(),
            });
        }
    }
    Ok(())
}

/// The routing table in force: the routes, each with its metrics cell, and the
/// round-robin state.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
    metrics: Vec<Arc<Mutex<VersionMetrics>>>,
    round_robin: SmoothWeighted,
}

/// The route chosen for one request.
pub(crate) struct Pick {
    pub(crate) addr: SocketAddr,
    pub(crate) metrics: Arc<Mutex<VersionMetrics>>,
}

impl RouteTable {
    /// A table of `routes` (already validated), `metrics[i]` belonging to `routes[i]`.
    /// The round-robin starts afresh.
    pub(crate) fn new(routes: Vec<Route>, metrics: Vec<Arc<Mutex<VersionMetrics>>>) -> Self {
        let round_robin = SmoothWeighted::new(routes.iter().map(|route| route.weight).collect());
        RouteTable {
            routes,
            metrics,
            round_robin,
        }
    }

    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for the next request; `None` when no route has a positive weight.
    pub(crate) fn pick(&mut self) -> Option<Pick> {
        let index = self.round_robin.next()?;
        Some(Pick {
            addr: self.routes.get(index)?.addr,
            metrics: Arc::clone(self.metrics.get(index)?),
        })
    }
}

/// nginx's smooth weighted round-robin: each pick adds every weight to its entry's
/// current value, takes the largest (the first on ties) and subtracts the total from it.
///
/// Starting from all-zero state, the current values return to all zero after every
/// `total` picks, so each block of `total` consecutive picks from the start holds each
/// entry exactly `weight` times, interleaved as evenly as possible (5/1/1 gives
/// a a b a c a a). Plain round-robin over a weight-expanded list would give the same
/// counts but in bursts; random choice would not give exact counts at all.
#[derive(Clone, Debug, Default)]
pub(crate) struct SmoothWeighted {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl SmoothWeighted {
    pub(crate) fn new(weights: Vec<u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        // At most 2^32 per entry: no overflow short of 2^31 entries.
        let total = weights.iter().sum();
        SmoothWeighted {
            current: vec![0; weights.len()],
            weights,
            total,
        }
    }

    /// The index of the next pick; `None` when every weight is 0 (or there are none).
    ///
    /// An entry of weight 0 is never picked: before the choice the current values sum to
    /// `total > 0`, so the largest is positive, and a weight-0 entry stays at 0.
    pub(crate) fn next(&mut self) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let mut best: Option<(usize, i64)> = None;
        for (index, (current, weight)) in self.current.iter_mut().zip(&self.weights).enumerate() {
            *current += weight;
            if best.is_none_or(|(_, largest)| *current > largest) {
                best = Some((index, *current));
            }
        }
        let (best, _) = best?;
        let current = self.current.get_mut(best)?;
        *current -= self.total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(weights: &[u32], count: usize) -> String {
        let mut round_robin = SmoothWeighted::new(weights.to_vec());
        (0..count)
            .map(|_| match round_robin.next() {
                Some(index) => char::from(b'a' + index as u8),
                None => '-',
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_sequences() {
        let check = |weights: &[u32], count: usize, expected: &str| {
            assert_eq!(picks(weights, count), expected, "weights {weights:?}");
        };
        // The sequence nginx documents for 5/1/1.
        check(&[5, 1, 1], 7, "aabacaa");
        check(&[5, 1, 1], 14, "aabacaaaabacaa");
        check(&[1, 1], 4, "abab");
        check(&[2, 1], 6, "abaaba");
        check(&[0, 3], 3, "bbb");
        check(&[1, 0, 1], 4, "acac");
        check(&[0, 0], 2, "--");
        check(&[], 2, "--");
        check(&[u32::MAX, u32::MAX, 1], 4, "abab");
    }

    #[test]
    fn every_block_of_total_weight_picks_is_exact() {
        let weights = [94u32, 5, 1];
        let sequence = picks(&weights, 1000);
        for block in sequence.as_bytes().chunks(100) {
            let count = |c: u8| block.iter().filter(|&&b| b == c).count();
            assert_eq!((count(b'a'), count(b'b'), count(b'c')), (94, 5, 1));
        }
    }

    #[test]
    fn validate_refuses_empty_and_duplicate_names() {
        let route = |name: &str| Route {
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            weight: 1,
        };
        assert!(validate(&[]).is_ok());
        assert!(validate(&[route("a"), route("b")]).is_ok());
        assert!(matches!(
            validate(&[route("a"), route("")]),
            Err(ProxyError::EmptyRouteName { index: 1 })
        ));
        assert!(matches!(
            validate(&[route("a"), route("b"), route("a")]),
            Err(ProxyError::DuplicateRouteName { name }) if name == "a"
        ));
    }
}
