//! Watched objects decoded without the parts no reconcile reads.
//!
//! The watches used to decode every object whole and then drop its managed fields (and,
//! for Pods and Namespaces, specs, annotations and most of the status): at 10,000 Scans
//! with statuses the managed fields are half of the bytes of a LIST, and decoding them
//! into `serde_json::Value` trees only to drop them was a tenth of a restart's CPU. Here
//! the decoder is told what to skip: a skipped field's value is stepped over
//! ([`IgnoredAny`]) without building anything, and the object comes out as the trimmed
//! one the stores keep.
//!
//! [`Lean<K>`] is `K` decoded through a [`Level`] tree of field names; it is a
//! [`kube::Resource`] of the same kind, so `watcher` can watch it, and [`watch`] hands on
//! plain `K` events.

use std::borrow::Cow;
use std::fmt;

use futures::{Stream, TryStreamExt as _};
use kube::runtime::watcher;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer as _, MapAccess, Visitor,
};

/// What to decode of one JSON object: fields to step over (or the only fields to keep),
/// and the levels of its fields that are objects with skips of their own.
#[derive(Debug)]
pub struct Level {
    /// Fields stepped over.
    pub skip: &'static [&'static str],
    /// When given, only these fields are decoded (`skip` still applies).
    pub keep_only: Option<&'static [&'static str]>,
    /// Fields whose values are objects decoded by a level of their own.
    pub children: &'static [(&'static str, &'static Level)],
}

impl Level {
    fn decodes(&self, field: &str) -> bool {
        !self.skip.contains(&field) && self.keep_only.is_none_or(|keep| keep.contains(&field))
    }

    fn child(&self, field: &str) -> Option<&'static Level> {
        self.children
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, level)| *level)
    }
}

/// `metadata` without its managed fields: what every store keeps of an object's metadata.
pub const WITHOUT_MANAGED_FIELDS: Level = Level {
    skip: &["managedFields"],
    keep_only: None,
    children: &[],
};

/// An object decoded whole but for `metadata.managedFields`.
pub const OBJECT: Level = Level {
    skip: &[],
    keep_only: None,
    children: &[("metadata", &WITHOUT_MANAGED_FIELDS)],
};

const METADATA_WITHOUT_ANNOTATIONS: Level = Level {
    skip: &["managedFields", "annotations"],
    keep_only: None,
    children: &[],
};

/// A Pod as the Pod store keeps it ([`crate::cache::trim_pod`]): identity, labels, owners,
/// phase and container statuses.
pub const POD: Level = Level {
    skip: &["spec"],
    keep_only: None,
    children: &[
        ("metadata", &METADATA_WITHOUT_ANNOTATIONS),
        (
            "status",
            &Level {
                skip: &[],
                keep_only: Some(&[
                    "phase",
                    "containerStatuses",
                    "initContainerStatuses",
                    "ephemeralContainerStatuses",
                ]),
                children: &[],
            },
        ),
    ],
};

/// A Namespace as the Namespace store keeps it ([`crate::cache::trim_namespace`]): name
/// and labels.
pub const NAMESPACE: Level = Level {
    skip: &["spec", "status"],
    keep_only: None,
    children: &[("metadata", &METADATA_WITHOUT_ANNOTATIONS)],
};

/// How a kind is decoded by its watch.
pub trait Shape {
    /// The fields of the object decoded.
    const SHAPE: &'static Level;
}

/// `K` decoded through `K::SHAPE`.
#[derive(Clone, Debug)]
pub struct Lean<K>(pub K);

impl<'de, K: Shape + de::Deserialize<'de>> de::Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(Shaped {
            inner: deserializer,
            level: K::SHAPE,
        })
        .map(Lean)
    }
}

impl<K: kube::Resource<DynamicType = ()>> kube::Resource for Lean<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &kube::core::ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut kube::core::ObjectMeta {
        self.0.meta_mut()
    }
}

/// `watcher::watcher` of `api`, its objects decoded through `K::SHAPE`.
pub fn watch<K>(
    api: kube::Api<Lean<K>>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + use<K>
where
    K: Shape
        + kube::Resource<DynamicType = ()>
        + Clone
        + de::DeserializeOwned
        + fmt::Debug
        + Send
        + 'static,
{
    watcher::watcher(api, config).map_ok(|event| match event {
        watcher::Event::Apply(Lean(o)) => watcher::Event::Apply(o),
        watcher::Event::Delete(Lean(o)) => watcher::Event::Delete(o),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(Lean(o)) => watcher::Event::InitApply(o),
        watcher::Event::InitDone => watcher::Event::InitDone,
    })
}

/// A deserializer whose objects are read through `level`.
struct Shaped<D> {
    inner: D,
    level: &'static Level,
}

impl<D> Shaped<D> {
    /// `visitor`, reading the object it is given through this level.
    fn shaping<V>(&self, visitor: V) -> ShapedVisitor<V> {
        ShapedVisitor {
            inner: visitor,
            level: self.level,
        }
    }
}

/// The methods an object is read through take the shaping visitor; every other one is
/// handed on as it is.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            self.inner.$method($($arg,)* visitor)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Shaped<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.shaping(visitor);
        self.inner.deserialize_any(visitor)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.shaping(visitor);
        self.inner.deserialize_map(visitor)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.shaping(visitor);
        self.inner.deserialize_struct(name, fields, visitor)
    }
    // An optional object (`status: Option<…>`) is shaped too.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.shaping(visitor);
        self.inner.deserialize_option(visitor)
    }

    forward! {
        deserialize_bool() deserialize_i8() deserialize_i16() deserialize_i32() deserialize_i64()
        deserialize_i128() deserialize_u8() deserialize_u16() deserialize_u32() deserialize_u64()
        deserialize_u128() deserialize_f32() deserialize_f64() deserialize_char() deserialize_str()
        deserialize_string() deserialize_bytes() deserialize_byte_buf() deserialize_unit()
        deserialize_seq() deserialize_identifier() deserialize_ignored_any()
        deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str)
        deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Scalars met where an object was expected go on to the visitor, to fail (or not) as
/// they would without the shape.
macro_rules! forward_visits {
    ($($method:ident($ty:ty))*) => {
        $(fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        })*
    };
}

/// The visitor of a shaped object: its map is read through the level.
struct ShapedVisitor<V> {
    inner: V,
    level: &'static Level,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for ShapedVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(ShapedMap {
            inner: map,
            level: self.level,
            child: None,
        })
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Shaped {
            inner: deserializer,
            level: self.level,
        })
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(seq)
    }
    forward_visits! {
        visit_bool(bool) visit_i64(i64) visit_u64(u64) visit_f64(f64) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String)
    }
}

/// A field name as read: borrowed from the input when it can be.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The fields of a shaped object: skipped ones stepped over, the others handed on, each
/// with its own level when it has one.
struct ShapedMap<A> {
    inner: A,
    level: &'static Level,
    /// The level of the value whose key was handed on last.
    child: Option<&'static Level>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for ShapedMap<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        loop {
            let Some(Key(key)) = self.inner.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            if !self.level.decodes(&key) {
                self.inner.next_value::<IgnoredAny>()?;
                continue;
            }
            self.child = self.level.child(&key);
            return match key {
                Cow::Borrowed(key) => seed
                    .deserialize(de::value::BorrowedStrDeserializer::new(key))
                    .map(Some),
                Cow::Owned(key) => seed.deserialize(key.into_deserializer()).map(Some),
            };
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        match self.child.take() {
            Some(level) => self
                .inner
                .next_value_seed(ShapedSeed { inner: seed, level }),
            None => self.inner.next_value_seed(seed),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        None
    }
}

/// A value decoded through `level`.
struct ShapedSeed<S> {
    inner: S,
    level: &'static Level,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for ShapedSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Shaped {
            inner: deserializer,
            level: self.level,
        })
    }
}

impl Shape for k8s_openapi::api::core::v1::Pod {
    const SHAPE: &'static Level = &POD;
}

impl Shape for k8s_openapi::api::core::v1::Namespace {
    const SHAPE: &'static Level = &NAMESPACE;
}

/// Kinds whose stores keep them whole but for their managed fields.
macro_rules! whole_objects {
    ($($kind:ty),* $(,)?) => {
        $(impl Shape for $kind {
            const SHAPE: &'static Level = &OBJECT;
        })*
    };
}

whole_objects!(
    stellaops_crds::Scan,
    stellaops_crds::ScanPolicy,
    stellaops_crds::Schedule,
    stellaops_crds::NotifyRule,
    stellaops_crds::FederationSite,
    stellaops_crds::MirrorDomain,
    stellaops_crds::ZastavaPolicy,
    stellaops_crds::Platform,
    k8s_openapi::api::batch::v1::Job,
    k8s_openapi::api::apps::v1::Deployment,
    k8s_openapi::api::core::v1::ConfigMap,
    k8s_openapi::api::core::v1::Secret,
);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use serde_json::json;
    use stellaops_crds::Scan;

    fn managed_fields() -> serde_json::Value {
        json!([{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                "time": "2026-12-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}])
    }

    /// Decoding through the shape gives what decoding whole and trimming gives.
    fn same_as_trimmed<K>(object: serde_json::Value, trim: impl Fn(K) -> K)
    where
        K: Shape + de::DeserializeOwned + PartialEq + fmt::Debug,
    {
        let bytes = serde_json::to_vec(&object).unwrap();
        let whole: K = serde_json::from_slice(&bytes).unwrap();
        let Lean(lean) = serde_json::from_slice::<Lean<K>>(&bytes).unwrap();
        assert_eq!(lean, trim(whole));
    }

    #[test]
    fn a_scan_is_decoded_whole_but_for_its_managed_fields() {
        let scan = json!({"apiVersion": "stella-ops.org/v1alpha1", "kind": "Scan",
            "metadata": {"name": "web", "namespace": "team-a", "labels": {"app": "web"},
                         "annotations": {"note": "kept"}, "managedFields": managed_fields(),
                         "generation": 2, "finalizers": ["stella-ops.org/cleanup"]},
            "spec": {"image": "registry.example.com/web:1", "policy": {"failOn": "high"}},
            "status": {"phase": "Queued", "observedGeneration": 2,
                       "conditions": [{"type": "Ready", "status": "False", "reason": "Queued",
                                       "message": "queued", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}});
        same_as_trimmed::<Scan>(scan.clone(), |mut s| {
            s.metadata.managed_fields = None;
            s
        });
        let Lean(lean) = serde_json::from_value::<Lean<Scan>>(scan).unwrap();
        assert!(lean.metadata.managed_fields.is_none());
        assert_eq!(lean.metadata.annotations.unwrap()["note"], "kept");
        assert!(lean.status.is_some());
    }

    #[test]
    fn a_pod_and_a_namespace_are_decoded_as_their_stores_keep_them() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "team-a", "labels": {"app": "web"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "managedFields": managed_fields(),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "web-1", "uid": "u-1", "controller": true}]},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "qosClass": "BestEffort",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0,
                           "image": "web:1", "imageID": "web@sha256:00",
                           "state": {"terminated": {"exitCode": 0, "message": "{\"ok\":true}"}}}]}});
        same_as_trimmed::<Pod>(pod, crate::cache::trim_pod);
        // A Pod without a status, and one whose status is null.
        same_as_trimmed::<Pod>(json!({"metadata": {"name": "p"}}), crate::cache::trim_pod);
        same_as_trimmed::<Pod>(
            json!({"metadata": {"name": "p"}, "status": null}),
            crate::cache::trim_pod,
        );
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team-a", "labels": {"environment": "production"},
                         "annotations": {"a": "b"}, "managedFields": managed_fields()},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        same_as_trimmed::<Namespace>(namespace, crate::cache::trim_namespace);
    }

    #[test]
    fn skipped_fields_are_stepped_over_whatever_they_hold() {
        // A managed field that would not decode, and a field name with an escape (owned,
        // not borrowed, when read).
        let text = r#"{"metadata": {"managedFields": [{"time": 7, "x": [1, {"y": null}]}],
                       "na\u006de": "web"}, "spec": {"image": "web:1"}}"#;
        let Lean(scan) = serde_json::from_str::<Lean<Scan>>(text).unwrap();
        assert_eq!(scan.metadata.name.as_deref(), Some("web"));
        assert!(serde_json::from_str::<Scan>(text).is_err());
        // What is decoded still fails as it would: a spec of the wrong type.
        let bad = r#"{"metadata": {"name": "web"}, "spec": 3}"#;
        let lean = serde_json::from_str::<Lean<Scan>>(bad)
            .unwrap_err()
            .to_string();
        let whole = serde_json::from_str::<Scan>(bad).unwrap_err().to_string();
        assert_eq!(lean, whole);
    }
}
