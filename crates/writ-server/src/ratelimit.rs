//! Rate limits (the `governor` crate, GCRA): per source address for every request, before
//! authentication, and per identity once a request is authenticated. A client over its limit
//! gets 429 `rate.limited` with `Retry-After`, and nothing is done for it.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Keys kept before the limiters forget the ones with a full allowance again.
const RETAIN_ABOVE: usize = 10_000;

pub struct RateLimits {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_identity: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimits {
    /// `per_second` requests per second for each address and each identity, in bursts of up
    /// to twice that; `None` when `per_second` is 0 (limits off, for example behind a gateway
    /// that limits, or in benchmarks).
    pub fn new(per_second: u32) -> Option<RateLimits> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(RateLimits {
            by_address: RateLimiter::keyed(quota),
            by_identity: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        })
    }

    pub fn address(&self, address: IpAddr) -> Result<(), ApiError> {
        self.check(&self.by_address, &address, "this address")
    }

    pub fn identity(&self, name: &str) -> Result<(), ApiError> {
        self.check(&self.by_identity, &name.to_owned(), "this identity")
    }

    fn check<K>(&self, limiter: &DefaultKeyedRateLimiter<K>, key: &K, whose: &str) -> Result<(), ApiError>
    where
        K: Clone + Eq + std::hash::Hash,
    {
        if limiter.len() > RETAIN_ABOVE {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::new(
                "rate.limited",
                format!("too many requests from {whose}: wait {seconds}s and ask again"),
            )
            .retry_after(seconds.max(1))
        })
    }
}
