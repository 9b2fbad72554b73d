//! Every container image a workload runs: containers, init containers and ephemeral
//! containers of Pods, and of the pod templates of Deployments, StatefulSets, DaemonSets,
//! ReplicaSets, Jobs and CronJobs.
//!
//! The object is read straight from the AdmissionReview body into [`Workload`], which keeps
//! only the few fields discovery needs (borrowed from the body where JSON allows) and skips
//! the rest unread, instead of building a JSON tree of the whole object. It is lenient
//! exactly as walking a `serde_json::Value` would be: a field of the wrong type counts as
//! absent, a list element that is not an object is a container without an image, and of a
//! key given twice the last one counts.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Which list of the pod spec a container comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerKind {
    /// `containers`
    Regular,
    /// `initContainers`
    Init,
    /// `ephemeralContainers`
    Ephemeral,
}

/// One container's image, with the path a person can find it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerImage {
    /// Field path, such as `spec.template.spec.initContainers[0].image`.
    pub path: String,
    /// Container name.
    pub container: String,
    /// Image reference as written.
    pub image: String,
    /// Which container list it is in.
    pub kind: ContainerKind,
}

/// Path of the pod spec inside an object of `kind`, or `None` for kinds without one.
pub fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&["spec"]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some(&["spec", "template", "spec"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

/// Every container image in `object` of `kind`, in spec order (init, regular, ephemeral).
/// Containers without an image are reported with an empty image so a policy can refuse
/// them explicitly rather than skip them. Walks a JSON tree; the webhook reads the body
/// into a [`Workload`] instead, which tests and the `admission_review` fuzz target check
/// against this.
pub fn images(kind: &str, object: &Value) -> Vec<ContainerImage> {
    let Some(path) = pod_spec_path(kind) else {
        return Vec::new();
    };
    let mut spec = object;
    for key in path {
        spec = &spec[*key];
    }
    let prefix = path.join(".");
    let mut found = Vec::new();
    for (field, kind) in [
        ("initContainers", ContainerKind::Init),
        ("containers", ContainerKind::Regular),
        ("ephemeralContainers", ContainerKind::Ephemeral),
    ] {
        let Some(list) = spec[field].as_array() else {
            continue;
        };
        for (i, container) in list.iter().enumerate() {
            found.push(ContainerImage {
                path: format!("{prefix}.{field}[{i}].image"),
                container: container["name"].as_str().unwrap_or_default().to_string(),
                image: container["image"].as_str().unwrap_or_default().to_string(),
                kind,
            });
        }
    }
    found
}

/// What image discovery reads of an object: its name and the container lists at each place
/// a pod spec can be (which one counts depends on the kind, known only from the request).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workload<'a> {
    metadata: Metadata<'a>,
    spec: Spec<'a>,
}

impl<'a> Workload<'a> {
    /// `metadata.name`, when it is a string.
    pub fn name(&self) -> Option<&str> {
        self.metadata.name.as_deref()
    }

    /// Every container image of this object read as `kind`: what [`images`] finds in the
    /// same object as a JSON tree.
    pub fn images(&self, kind: &str) -> Vec<ContainerImage> {
        self.image_refs(kind)
            .iter()
            .map(ImageRef::to_container_image)
            .collect()
    }

    /// [`Workload::images`] borrowed from this object: nothing is copied, and a field path
    /// is built only when asked for ([`ImageRef::path`]).
    pub fn image_refs(&self, kind: &str) -> Vec<ImageRef<'_>> {
        let (prefix, spec) = match kind {
            "Pod" => ("spec", &self.spec.pod),
            "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "Job"
            | "ReplicationController" => ("spec.template.spec", &self.spec.template.spec),
            "CronJob" => (
                "spec.jobTemplate.spec.template.spec",
                &self.spec.job_template.spec.template.spec,
            ),
            _ => return Vec::new(),
        };
        let mut found = Vec::new();
        for (field, kind, list) in [
            ("initContainers", ContainerKind::Init, &spec.init_containers),
            ("containers", ContainerKind::Regular, &spec.containers),
            (
                "ephemeralContainers",
                ContainerKind::Ephemeral,
                &spec.ephemeral_containers,
            ),
        ] {
            let Some(list) = list else {
                continue;
            };
            for (index, container) in list.iter().enumerate() {
                found.push(ImageRef {
                    prefix,
                    field,
                    index,
                    container: container.name.as_deref().unwrap_or_default(),
                    image: container.image.as_deref().unwrap_or_default(),
                    kind,
                });
            }
        }
        found
    }
}

/// One container's image as read from the body, borrowed: a [`ContainerImage`] that has
/// not been copied out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageRef<'w> {
    prefix: &'static str,
    field: &'static str,
    index: usize,
    /// Container name.
    pub container: &'w str,
    /// Image reference as written.
    pub image: &'w str,
    /// Which container list it is in.
    pub kind: ContainerKind,
}

impl ImageRef<'_> {
    /// Field path, such as `spec.template.spec.initContainers[0].image`.
    pub fn path(&self) -> String {
        image_path(self.prefix, self.field, self.index)
    }

    /// The owned [`ContainerImage`].
    pub fn to_container_image(&self) -> ContainerImage {
        ContainerImage {
            path: self.path(),
            container: self.container.to_string(),
            image: self.image.to_string(),
            kind: self.kind,
        }
    }
}

impl crate::policy::Container for ImageRef<'_> {
    fn image(&self) -> &str {
        self.image
    }
    fn path(&self) -> String {
        ImageRef::path(self)
    }
}

/// `{prefix}.{field}[{i}].image`, without the formatting machinery.
fn image_path(prefix: &str, field: &str, i: usize) -> String {
    let mut path = String::with_capacity(prefix.len() + field.len() + 12);
    path.push_str(prefix);
    path.push('.');
    path.push_str(field);
    path.push('[');
    let mut digits = [0u8; 20];
    let mut n = i;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    path.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
    path.push_str("].image");
    path
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Metadata<'a> {
    name: Option<Cow<'a, str>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Spec<'a> {
    /// A Pod's own lists.
    pod: PodSpec<'a>,
    /// `template` (Deployments, Jobs, …).
    template: Template<'a>,
    /// `jobTemplate` (CronJobs).
    job_template: JobTemplate<'a>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Template<'a> {
    spec: PodSpec<'a>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct JobTemplate<'a> {
    spec: JobSpec<'a>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct JobSpec<'a> {
    template: Template<'a>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct PodSpec<'a> {
    init_containers: Option<Vec<Container<'a>>>,
    containers: Option<Vec<Container<'a>>>,
    ephemeral_containers: Option<Vec<Container<'a>>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Container<'a> {
    name: Option<Cow<'a, str>>,
    image: Option<Cow<'a, str>>,
}

/// A JSON object read field by field; any other value reads as the default (and is
/// skipped unread).
trait Object<'de>: Default {
    /// Read the value of `key` from `map` (every key must consume its value).
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

/// Reads `T` leniently (see the module documentation).
#[derive(Default)]
struct Lenient<T>(T);

struct LenientVisitor<T>(PhantomData<T>);

/// Every value but strings, lists and objects reads as the default.
macro_rules! scalars_are_the_default {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    };
}

impl<'de, T: Object<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    scalars_are_the_default!();

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Default::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Lenient(T::default()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = T::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            value.field(&key.0, &mut map)?;
        }
        Ok(Lenient(value))
    }
}

impl<'de, T: Object<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor(PhantomData))
    }
}

/// A map key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A string, or `None` for any other value.
#[derive(Default)]
struct LenientStr<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for LenientStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = LenientStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Borrowed(v))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Owned(v))))
            }
            // A string with escapes arrives here (the parser unescaped it into scratch).
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Owned(v.to_string()))))
            }
            scalars_are_the_default!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
        }
        d.deserialize_any(StrVisitor)
    }
}

/// A list of `T`, or `None` for any other value.
#[derive(Default)]
struct LenientList<T>(Option<Vec<T>>);

impl<'de, T: Object<'de>> Deserialize<'de> for LenientList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);
        impl<'de, T: Object<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = LenientList<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_are_the_default!();

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Default::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(Lenient(item)) = seq.next_element::<Lenient<T>>()? {
                    list.push(item);
                }
                Ok(LenientList(Some(list)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientList(None))
            }
        }
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

fn object<'de, T: Object<'de>, A: MapAccess<'de>>(map: &mut A) -> Result<T, A::Error> {
    map.next_value::<Lenient<T>>().map(|v| v.0)
}

fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}

impl<'de> Object<'de> for Workload<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "metadata" => self.metadata = object(map)?,
            "spec" => self.spec = object(map)?,
            _ => skip(map)?,
        }
        Ok(())
    }
}

impl<'de> Object<'de> for Metadata<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "name" => self.name = map.next_value::<LenientStr<'de>>()?.0,
            _ => skip(map)?,
        }
        Ok(())
    }
}

impl<'de> Object<'de> for Spec<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "template" => self.template = object(map)?,
            "jobTemplate" => self.job_template = object(map)?,
            _ => self.pod.field(key, map)?,
        }
        Ok(())
    }
}

impl<'de> Object<'de> for Template<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "spec" => self.spec = object(map)?,
            _ => skip(map)?,
        }
        Ok(())
    }
}

impl<'de> Object<'de> for JobTemplate<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "spec" => self.spec = object(map)?,
            _ => skip(map)?,
        }
        Ok(())
    }
}

impl<'de> Object<'de> for JobSpec<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "template" => self.template = object(map)?,
            _ => skip(map)?,
        }
        Ok(())
    }
}

impl<'de> Object<'de> for PodSpec<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let list = match key {
            "initContainers" => &mut self.init_containers,
            "containers" => &mut self.containers,
            "ephemeralContainers" => &mut self.ephemeral_containers,
            _ => return skip(map),
        };
        *list = map.next_value::<LenientList<Container<'de>>>()?.0;
        Ok(())
    }
}

impl<'de> Object<'de> for Container<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "name" => self.name = map.next_value::<LenientStr<'de>>()?.0,
            "image" => self.image = map.next_value::<LenientStr<'de>>()?.0,
            _ => skip(map)?,
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Workload<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Lenient::<Workload<'de>>::deserialize(d).map(|w| w.0)
    }
}
