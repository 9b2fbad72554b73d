//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never reconcile at
//! once. The decision is a pure function of the Lease and the clock; the loop around it
//! uses optimistic concurrency (`resourceVersion`) so two candidates cannot both win.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

/// Leader-election settings.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity (its Pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and candidates retry.
    pub retry_period: Duration,
}

/// What a candidate does with the Lease it sees.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds a live lease.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decide what to do with `lease` at `now`. Pure.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(holder) => {
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
            match renewed {
                Some(renewed) if renewed + duration > now => Decision::Follow {
                    holder: holder.to_string(),
                },
                _ => Decision::TakeOver,
            }
        }
    }
}

/// A leader-election candidate.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
}

/// Outcome of one election round.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// We hold the lease.
    Leading,
    /// Someone else does.
    Following(String),
}

impl LeaderElector {
    /// A candidate for `config.lease_name` using `client`.
    pub fn new(client: kube::Client, config: LeaderConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    fn held_spec(
        &self,
        previous: Option<&LeaseSpec>,
        now: Timestamp,
        transition: bool,
    ) -> LeaseSpec {
        let previous = previous.cloned().unwrap_or_default();
        let transitions = previous.lease_transitions.unwrap_or(0) + i32::from(transition);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs() as i32),
            acquire_time: if transition {
                Some(MicroTime(now))
            } else {
                previous.acquire_time
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: read the Lease and create, renew or take it over when we may.
    /// A lost race (409 Conflict, 409 AlreadyExists) is reported as following.
    pub async fn round(&self) -> kube::Result<Round> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.config.lease_name).await?;
        let result = match decide(current.as_ref(), &self.config.identity, now) {
            Decision::Follow { holder } => return Ok(Round::Following(holder)),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.lease_name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.held_spec(None, now, true)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            decision @ (Decision::Renew | Decision::TakeOver) => {
                let mut lease = current.expect("a lease was read");
                let transition = decision == Decision::TakeOver;
                lease.spec = Some(self.held_spec(lease.spec.as_ref(), now, transition));
                // resourceVersion stays set: the API server refuses the write if anyone
                // else changed the Lease since we read it.
                self.api
                    .replace(&self.config.lease_name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(Round::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Round::Following("another candidate".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// Wait until we lead. `on_round` sees every round's outcome (for readiness and logs).
    pub async fn acquire(&self, mut on_round: impl FnMut(&kube::Result<Round>)) {
        loop {
            let round = self.round().await;
            on_round(&round);
            if matches!(round, Ok(Round::Leading)) {
                return;
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Keep renewing; returns when leadership is lost (someone else holds the Lease, or no
    /// renewal succeeded for a whole lease duration), so the caller can stop reconciling.
    pub async fn hold(&self) -> String {
        let mut last_success = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.round().await {
                Ok(Round::Leading) => last_success = tokio::time::Instant::now(),
                Ok(Round::Following(holder)) => return format!("lease taken over by {holder}"),
                Err(error) => {
                    tracing::warn!(%error, "lease renewal failed");
                    if last_success.elapsed() >= self.config.lease_duration {
                        return format!(
                            "could not renew the lease for {:?}: {error}",
                            self.config.lease_duration
                        );
                    }
                }
            }
        }
    }

    /// Give the lease up on shutdown so a standby takes over at once.
    pub async fn release(&self) -> kube::Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        self.api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

/// Lease renewal on a thread of its own, with its own single-threaded runtime and its own
/// client (built there, so its connection and buffer tasks run there too): reconciles that
/// keep the main runtime's workers busy — decoding a 10,000-object list, a slow reconcile
/// that blocks — cannot delay a renewal past the lease duration and cost the leadership.
pub struct LeaseHolder {
    lost: tokio::sync::oneshot::Receiver<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseHolder {
    /// Start renewing the Lease of `config` (already acquired) with a client made from
    /// `client_config`.
    pub fn start(client_config: kube::Config, config: LeaderConfig) -> std::io::Result<Self> {
        let (lost_tx, lost) = tokio::sync::oneshot::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lease-renewal".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = lost_tx.send(format!("no runtime for lease renewal: {error}"));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = match kube::Client::try_from(client_config) {
                        Ok(client) => client,
                        Err(error) => {
                            let _ = lost_tx.send(format!("no client for lease renewal: {error}"));
                            return;
                        }
                    };
                    let elector = LeaderElector::new(client, config);
                    tokio::select! {
                        lost = elector.hold() => { let _ = lost_tx.send(lost); }
                        _ = stop_rx => {}
                    }
                });
            })?;
        Ok(LeaseHolder {
            lost,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Wait until leadership is lost, and say why.
    pub async fn lost(&mut self) -> String {
        (&mut self.lost)
            .await
            .unwrap_or_else(|_| "the lease renewal thread stopped".into())
    }

    /// Whether leadership was lost already (without waiting).
    pub fn is_lost(&mut self) -> bool {
        !matches!(
            self.lost.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        )
    }

    /// Stop renewing and wait for the thread (before the Lease is released, so no renewal
    /// races the release).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
