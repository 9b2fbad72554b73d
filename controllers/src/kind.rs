//! What the controllers need to know of every Stella Ops kind.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stellaops_crds::{
    FederationSite, MirrorDomain, NotifyRule, Platform, Scan, ScanPolicy, Schedule, ZastavaPolicy,
};

/// A Stella Ops kind as the generic parts of the controllers see it.
pub trait StellaKind:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The kind's name.
    const KIND: &'static str;
    /// The kind's current conditions.
    fn conditions(&self) -> &[Condition];
    /// The API for objects of this kind in `namespace` (ignored for cluster-scoped kinds).
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;
}

macro_rules! namespaced_kind {
    ($ty:ty, $kind:literal) => {
        impl StellaKind for $ty {
            const KIND: &'static str = $kind;
            fn conditions(&self) -> &[Condition] {
                self.status
                    .as_ref()
                    .map(|s| s.conditions.as_slice())
                    .unwrap_or_default()
            }
            fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
                match namespace {
                    Some(ns) => Api::namespaced(client, ns),
                    None => Api::all(client),
                }
            }
        }
    };
}

namespaced_kind!(Scan, "Scan");
namespaced_kind!(Schedule, "Schedule");
namespaced_kind!(NotifyRule, "NotifyRule");
namespaced_kind!(FederationSite, "FederationSite");
namespaced_kind!(MirrorDomain, "MirrorDomain");
namespaced_kind!(Platform, "Platform");

macro_rules! cluster_kind {
    ($ty:ty, $kind:literal) => {
        impl StellaKind for $ty {
            const KIND: &'static str = $kind;
            fn conditions(&self) -> &[Condition] {
                self.status
                    .as_ref()
                    .map(|s| s.conditions.as_slice())
                    .unwrap_or_default()
            }
            fn api(client: Client, _namespace: Option<&str>) -> Api<Self> {
                Api::all(client)
            }
        }
    };
}

cluster_kind!(ScanPolicy, "ScanPolicy");

impl StellaKind for ZastavaPolicy {
    const KIND: &'static str = "ZastavaPolicy";
    fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default()
    }
    fn api(client: Client, _namespace: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
}
